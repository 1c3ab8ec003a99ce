"""The review page makes decisions explicit and keeps its layout, at 1024 and 1440 px: thresholds
beside scores, no final submission while a suggestion above threshold is undecided, "accept the
rest", A/R moving on, only the selected code's evidence drawn, a note's retries grouped, the search
list clear of the submit bar, long note ids on one line. Each state is saved as a screenshot under
test-artifacts/ after its checks."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.service.browser_testing import (
    LiveService,
    code_row,
    marks,
    open_note,
    save_artifact,
    settle,
    sign_in,
)

# With the review bundle (conftest REVIEW_THRESHOLDS): R50.9 (threshold 0.2) and R05 (0.3) above,
# I10 (0.5) below.
NOTE = "Patient with fever and cough; history of hypertension."
WIDTHS = [1024, 1440]


@pytest.fixture(params=WIDTHS, ids=[f"{width}px" for width in WIDTHS])
def width(request: pytest.FixtureRequest) -> int:
    return int(request.param)


@pytest.fixture
def live(
    make_live: Callable[..., LiveService], sqlite_url: str, review_bundle_dir: Path
) -> LiveService:
    return make_live(sqlite_url, bundle_dir=review_bundle_dir)


def open_review(open_page: Callable[..., Any], live: LiveService, width: int) -> Any:
    page = open_page(f"{live.base_url}/review", viewport={"width": width, "height": 800})
    sign_in(page, "coder", coder_id="coder-9")
    settle(page)
    return page


def check_layout(page: Any) -> None:
    """Nothing runs off the side of the window, and the submit bar's buttons can be clicked
    (nothing lies over them)."""
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"the page is {overflow}px wider than the window"
    covered = page.evaluate(
        """() => [...document.querySelectorAll('.submit-bar button')].filter(button => {
            const box = button.getBoundingClientRect();
            if (!box.width) return false;
            const hit = document.elementFromPoint(box.x + box.width / 2, box.y + box.height / 2);
            return hit !== button && !button.contains(hit);
        }).map(button => button.id)"""
    )
    assert covered == []


def shot(page: Any, tmp_path: Path, name: str, width: int) -> None:
    check_layout(page)
    save_artifact(page, tmp_path, f"review-{name}-{width}.png")


def test_thresholds_show_beside_scores(
    open_page: Callable[..., Any], live: LiveService, width: int, tmp_path: Path
) -> None:
    stored = live.stored(live.predict(NOTE, note_id="T-1")["prediction_id"])
    page = open_review(open_page, live, width)
    open_note(page, "T-1")
    for code in stored["codes"]:
        row = code_row(page, code["code"])
        assert row.locator(".cutoff").inner_text() == f"threshold {code['threshold']:.2f}"
        expected = "above threshold" if code["above_threshold"] else "below threshold"
        assert row.locator(".threshold").inner_text() == expected
    assert [c["code"] for c in stored["codes"] if c["above_threshold"]] == ["R50.9", "R05"]
    assert page.inner_text("#pending-summary") == (
        "No decisions yet. 2 above threshold undecided: R50.9, R05."
    )
    shot(page, tmp_path, "thresholds", width)


def test_undecided_suggestions_cannot_be_submitted_without_a_choice(
    open_page: Callable[..., Any], live: LiveService, width: int, tmp_path: Path
) -> None:
    pid = live.predict(NOTE, note_id="U-1")["prediction_id"]
    page = open_review(open_page, live, width)
    open_note(page, "U-1")

    code_row(page, "R50.9").locator("button.reject").click()
    page.click("#submit-review")
    settle(page)
    assert page.inner_text("#alert").startswith(
        "Not submitted: 1 suggestion(s) above threshold are undecided (R05)."
    )
    assert live.feedback_rows(pid) == []  # nothing was sent
    assert page.get_attribute("#code-list li.selected", "data-code") == "R05"
    shot(page, tmp_path, "undecided-refused", width)

    # Progress can be saved; the note stays in the queue, marked in progress.
    page.click("#save-progress")
    settle(page)
    assert page.inner_text("#status").endswith("1 above threshold still undecided.")
    assert live.feedback_rows(pid) == [("R50.9", "rejected", "coder-9", None, "coder-client")]
    assert page.inner_text("#queue-list .queue-item .badge") == "in progress"
    assert "review in progress (1 above threshold undecided)" in page.inner_text("#note-meta")
    shot(page, tmp_path, "progress-saved", width)

    page.click("#reject-rest")
    assert code_row(page, "R05").locator(".decision-state").inner_text() == "rejected · not saved"
    page.click("#submit-review")
    settle(page)
    assert live.feedback_rows(pid)[-1] == ("R05", "rejected", "coder-9", None, "coder-client")
    detail = live.stored(pid)
    assert (detail["review"]["status"], detail["review"]["final_codes"]) == ("complete", [])


def test_accept_the_rest(
    open_page: Callable[..., Any], live: LiveService, width: int, tmp_path: Path
) -> None:
    pid = live.predict(NOTE, note_id="R-1")["prediction_id"]
    page = open_review(open_page, live, width)
    open_note(page, "R-1")
    assert page.inner_text("#accept-rest") == "Accept the rest (2)"
    page.click("#accept-rest")
    states = {
        code: code_row(page, code).locator(".decision-state").inner_text()
        for code in ("R50.9", "R05", "I10")
    }
    assert states == {
        "R50.9": "accepted · not saved",
        "R05": "accepted · not saved",
        "I10": "undecided",  # below threshold: not part of "the rest"
    }
    assert page.is_disabled("#accept-rest") and page.is_disabled("#reject-rest")
    shot(page, tmp_path, "accept-the-rest", width)
    page.click("#submit-review")
    settle(page)
    assert live.feedback_rows(pid) == [
        ("R50.9", "accepted", "coder-9", None, "coder-client"),
        ("R05", "accepted", "coder-9", None, "coder-client"),
    ]
    assert live.stored(pid)["review"]["final_codes"] == ["R50.9", "R05"]


def test_a_and_r_move_on_to_the_next_undecided_code(
    open_page: Callable[..., Any], live: LiveService, tmp_path: Path
) -> None:
    pid = live.predict(NOTE, note_id="K-1")["prediction_id"]
    page = open_review(open_page, live, 1024)
    open_note(page, "K-1")
    selected = "document.querySelector('#code-list li.selected')?.dataset.code"
    focused = "document.activeElement.closest('li')?.dataset.code"
    page.focus("#code-list [data-role=select] >> nth=0")
    assert page.evaluate(selected) == "R50.9"

    page.keyboard.press("a")
    assert (page.evaluate(selected), page.evaluate(focused)) == ("R05", "R05")
    page.keyboard.press("r")  # R decides R05: it does not overwrite the accept of R50.9
    assert page.evaluate(selected) == "I10"
    # Back on a decided code, changing its decision moves on to the one still undecided.
    page.keyboard.press("k")
    page.keyboard.press("k")
    assert page.evaluate(selected) == "R50.9"
    page.keyboard.press("r")
    assert page.evaluate(selected) == "I10"
    page.keyboard.press("Control+Enter")
    settle(page)
    assert live.feedback_rows(pid) == [
        ("R50.9", "rejected", "coder-9", None, "coder-client"),
        ("R05", "rejected", "coder-9", None, "coder-client"),
    ]


def test_only_the_selected_codes_evidence_is_drawn(
    open_page: Callable[..., Any], live: LiveService, width: int, tmp_path: Path
) -> None:
    stored = live.stored(live.predict(NOTE, note_id="E-1")["prediction_id"])
    page = open_review(open_page, live, width)
    open_note(page, "E-1")
    fever = [(h["start"], h["end"], h["text"]) for h in stored["codes"][0]["highlights"]]
    assert {text for _, _, text in marks(page)} == {text for _, _, text in fever}
    decorations = (
        "[...document.querySelectorAll('#note-text .evidence.other')]"
        ".map(e => getComputedStyle(e).textDecorationLine)"
    )
    others = page.evaluate(decorations)
    assert others and set(others) == {"none"}  # other codes' evidence is not underlined
    shot(page, tmp_path, "evidence-selected-only", width)

    page.hover("#note-text .evidence.other >> nth=0")
    assert (
        page.evaluate(
            "getComputedStyle(document.querySelector('#note-text .evidence.other:hover'))"
            ".textDecorationLine"
        )
        == "underline"
    )
    assert page.inner_text("#evidence-info").startswith("Evidence for ")

    page.check("#show-all-evidence")
    assert set(page.evaluate(decorations)) == {"underline"}
    shot(page, tmp_path, "evidence-every-code", width)


def test_a_notes_retries_are_grouped_in_the_queue(
    open_page: Callable[..., Any], live: LiveService, width: int, tmp_path: Path
) -> None:
    first = live.predict(NOTE, note_id="G-1")["prediction_id"]
    second = live.predict(NOTE, note_id="G-1")["prediction_id"]  # the client retried
    live.predict("Chest pain today.", note_id="G-2")
    page = open_review(open_page, live, width)
    assert page.locator("#queue-list .qi-title").all_inner_texts() == ["Note G-2", "Note G-1"]
    group = page.locator("#queue-list li.qi-group")
    assert group.locator(".qi-retries").inner_text() == "coded 2 times: newest shown, earlier below"
    assert group.locator(".queue-item").get_attribute("data-id") == second
    earlier = group.locator(".retries .retry-item")
    assert earlier.count() == 1 and earlier.get_attribute("data-id") == first
    earlier.click()
    settle(page)
    assert page.get_attribute("#queue-list [aria-current=true]", "data-id") == first
    shot(page, tmp_path, "queue-retries", width)


def test_search_list_stays_clear_of_the_submit_bar(
    open_page: Callable[..., Any], live: LiveService, width: int, tmp_path: Path
) -> None:
    live.predict(NOTE, note_id="S-1")
    page = open_review(open_page, live, width)
    open_note(page, "S-1")
    page.fill("#code-search", "fever")
    page.wait_for_selector("#code-search-results:not([hidden]) [role=option]")
    boxes = page.evaluate(
        """() => ['#code-search-results', '.submit-bar'].map(selector => {
            const box = document.querySelector(selector).getBoundingClientRect();
            return [box.top, box.bottom];
        })"""
    )
    (list_top, list_bottom), (bar_top, _) = boxes
    assert list_bottom <= bar_top + 1, boxes  # the list ends above the bar
    assert list_top < list_bottom
    shot(page, tmp_path, "search-open", width)


def test_a_long_note_id_stays_on_one_line(
    open_page: Callable[..., Any], live: LiveService, width: int, tmp_path: Path
) -> None:
    long_id = "encounter-2026-11-30-ward-7-bed-12-" + "x" * 60
    live.predict(NOTE, note_id=long_id)
    page = open_review(open_page, live, width)
    title = page.locator("#queue-list .qi-title")
    heights = title.evaluate(
        "e => [e.getBoundingClientRect().height, parseFloat(getComputedStyle(e).lineHeight),"
        " e.scrollWidth > e.clientWidth]"
    )
    height, line_height, cut = heights
    assert height <= line_height * 1.5 and cut  # one line, ellipsis
    assert title.get_attribute("title") == f"Note {long_id}"
    assert page.inner_text("#note-heading") == f"Note {long_id}"  # whole in the heading
    shot(page, tmp_path, "long-note-id", width)


def test_sign_in_says_what_key_to_use_in_development(
    open_page: Callable[..., Any], live: LiveService, width: int, tmp_path: Path
) -> None:
    page = open_page(f"{live.base_url}/review", viewport={"width": width, "height": 800})
    assert "any word (for example dev) signs you in" in " ".join(
        page.inner_text("#sign-in-form").split()
    )
    shot(page, tmp_path, "sign-in", width)


def test_evidence_items_show_source_and_flags_as_words(
    open_page: Callable[..., Any], live: LiveService, tmp_path: Path
) -> None:
    """When the API's evidence items carry `source` and context flags, the list names them."""
    import json

    live.predict(NOTE, note_id="F-1")
    page = open_page(f"{live.base_url}/review", viewport={"width": 1440, "height": 800})

    def with_tags(route: Any) -> None:
        response = route.fetch()
        body = response.json()
        for code in body["codes"]:
            for index, highlight in enumerate(code["highlights"]):
                highlight["source"] = "lexicon" if index == 0 else "attention"
                highlight["flags"] = ["negated", "family"] if index == 0 else []
        route.fulfill(response=response, body=json.dumps(body))

    page.route("**/v1/predictions/*-*", with_tags)
    sign_in(page, "coder")
    settle(page)
    open_note(page, "F-1")
    first = page.locator("#evidence-list .evidence-jump >> nth=0")
    assert first.locator(".tag").all_inner_texts() == ["lexicon", "negated", "family history"]
    assert "(lexicon, negated, family history)" in str(first.get_attribute("aria-label"))
    first.click()
    assert page.evaluate("document.querySelector('#note-text mark.flash') !== null")
    tags = page.evaluate(
        """async () => {
            const m = await import(new URL('review/evidence.js', document.baseURI).href);
            return [
                m.evidenceTags({}),
                m.evidenceTags({source: 'attention', negated: true, hypothetical: false}),
                m.evidenceTags({flags: {hypothetical: true, family: false}}),
            ];
        }"""
    )
    assert tags == [[], ["attention", "negated"], ["hypothetical"]]
    shot(page, tmp_path, "evidence-tags", 1440)
