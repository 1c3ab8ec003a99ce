"""The coders' review page, end to end in headless Chromium against a real uvicorn: sign-in and
refused keys, evidence highlights against the API's offsets, decisions saved as feedback rows,
the keyboard, pasting a note, notes full of markup that must stay text, and the page's headers.

Browser tests are skipped (with the reason) only when /usr/bin/chromium or playwright is missing;
each saves a screenshot under test-artifacts/.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest

from service.api.routes.review import STATIC_DIR
from tests.service.browser_testing import (
    CONTRAST_JS,
    LiveService,
    code_row,
    marks,
    merged_runs,
    open_note,
    save_artifact,
    settle,
    sign_in,
)
from tests.service.service_testing import KEYS, Service

# An emoji before the evidence: the API counts code points, JavaScript UTF-16 units.
NOTE_A = "Patient 🤒 admitted with fever and cough. Fever again at night; history of hypertension."
NOTE_B = "Chest pain today, treated at the hospital."
XSS_NOTE = (
    'Fever <script>window.__pwned=1</script> and <img src=x onerror="window.__pwned=1"> '
    "cough & <b>bold</b>"
)
XSS_NOTE_ID = '<img src=x onerror="window.__pwned=2">'


# -- fixtures -------------------------------------------------------------------------------------


# -- the review flow -------------------------------------------------------------------------------


def test_review_a_note_end_to_end(
    open_page: Callable[..., Any],
    make_live: Callable[..., LiveService],
    database_url: str,
    tmp_path: Path,
) -> None:
    live = make_live(database_url)
    note_a = live.predict(NOTE_A, note_id="A-1")
    live.predict(NOTE_B, note_id="B-2")  # newer: first in the queue
    stored_a = live.stored(note_a["prediction_id"])
    assert [code["code"] for code in stored_a["codes"]] == ["R50.9", "R05", "I10"]

    page = open_page(f"{live.base_url}/review")
    sign_in(page, "coder", coder_id="coder-17")
    settle(page)
    assert page.inner_text("#who-name") == "coder-client"
    assert page.inner_text("#who-role") == "coder"
    assert page.inner_text("#who-coder") == "coder-17"
    assert page.locator("#queue-list .qi-title").all_inner_texts() == ["Note B-2", "Note A-1"]

    open_note(page, "A-1")
    assert page.inner_text("#code-list li[data-code='R50.9'] .score") == (
        f"score {stored_a['codes'][0]['score']:.2f}"
    )
    assert page.inner_text("#code-list li[data-code='R50.9'] .threshold") == "above threshold"
    assert page.inner_text("#code-list li[data-code='R05'] .threshold") == "below threshold"

    # Selecting a code marks exactly its spans: offsets and text as the API gives them.
    for code in stored_a["codes"]:
        code_row(page, code["code"]).locator("[data-role=select]").click()
        page.wait_for_selector(f"#code-list li.selected[data-code='{code['code']}']")
        expected = [(h["start"], h["end"], h["text"]) for h in code["highlights"]]
        assert expected, code
        assert merged_runs(marks(page)) == merged_runs(expected)
        for start, end, text in marks(page):
            assert NOTE_A[start:end] == text
    # The whole note is there, in order, as text.
    assert page.text_content("#note-text") == NOTE_A

    # R50.9: "fever" twice with equal weight, both drawn at full strength; hover names the code.
    code_row(page, "R50.9").locator("[data-role=select]").click()
    fever = stored_a["codes"][0]["highlights"]
    assert [NOTE_A[h["start"] : h["end"]] for h in fever] == ["fever", "Fever"]
    assert page.eval_on_selector_all("#note-text mark", "els => els.map(e => e.className)") == [
        "evidence selected w4",
        "evidence selected w4",
    ]
    page.hover("#note-text mark >> nth=0")
    assert "Evidence for R50.9" in page.inner_text("#evidence-info")
    assert page.get_attribute("#note-text mark >> nth=0", "title") == (
        f"Evidence for R50.9 {stored_a['codes'][0]['description']} "
        f"(weight {round(fever[0]['weight'] * 100)}%)"
    )

    # Accept one, reject one, add one from the catalogue, comment.
    code_row(page, "R50.9").locator("button.accept").click()
    code_row(page, "R05").locator("button.reject").click()
    page.fill("#code-search", "J18.9")
    page.click("#code-search-results [role=option]:has-text('J18.9')")
    assert code_row(page, "J18.9").locator(".decision-state").inner_text() == "added · not saved"
    page.fill("#comment", "pneumonia <b>on</b> the chest film")
    assert code_row(page, "R50.9").locator("button.accept").get_attribute("aria-pressed") == "true"
    assert code_row(page, "R05").locator("button.reject").get_attribute("aria-pressed") == "true"
    assert page.inner_text("#pending-summary") == (
        "Not saved yet: 1 accepted, 1 rejected, 1 added."
    )
    code_row(page, "R50.9").locator("[data-role=select]").click()
    save_artifact(page, tmp_path, "review-screen.png")
    # Text on this screen is readable: WCAG AA, 4.5:1, for every kind of text shown.
    contrast = page.evaluate(
        CONTRAST_JS,
        [
            "#note-text mark.w4",
            "#note-meta",
            "#evidence-info",
            "#status",
            ".queue-item .qi-date",
            ".badge.todo",
            "li[data-code='R50.9'] .threshold",
            "li[data-code='R05'] .threshold",
            "li[data-code='R50.9'] button.accept",
            "li[data-code='R05'] button.reject",
            "li[data-code='I10'] button.accept",
            ".code-row.unsaved .decision-state",
            "#submit-review",
            "footer.keys dd",
            "#who-coder",
        ],
    )
    assert {selector: ratio for selector, ratio in contrast.items() if not ratio >= 4.5} == {}

    page.click("#submit-review")
    settle(page)
    assert page.inner_text("#note-heading") == "Note B-2"
    assert page.inner_text("#status") == (
        "Saved the review of note A-1 (1 accepted, 1 rejected, 1 added). Now showing note B-2."
    )
    comment = "pneumonia <b>on</b> the chest film"
    assert live.feedback_rows(note_a["prediction_id"]) == [
        ("R50.9", "accepted", "coder-17", comment, "coder-client"),
        ("R05", "rejected", "coder-17", comment, "coder-client"),
        ("J18.9", "added", "coder-17", comment, "coder-client"),
    ]
    # The reviewed note left the unreviewed queue.
    assert page.locator("#queue-list .qi-title").all_inner_texts() == ["Note B-2"]

    # Re-opening the reviewed note shows the saved decisions.
    page.select_option("#filter-reviewed", "true")
    page.click("#queue-filters button[type=submit]")
    settle(page)
    assert page.locator("#queue-list .qi-title").all_inner_texts() == ["Note A-1"]
    open_note(page, "A-1")
    page.wait_for_selector("#code-list li[data-code='J18.9'] .description:has-text('neumon')")
    states = {
        code: code_row(page, code).locator(".decision-state").inner_text()
        for code in ("R50.9", "R05", "I10", "J18.9")
    }
    assert states == {
        "R50.9": "accepted · saved",
        "R05": "rejected · saved",
        "I10": "undecided",
        "J18.9": "added · saved",
    }
    assert code_row(page, "R05").locator("button.reject").get_attribute("aria-pressed") == "true"
    assert "comment: “pneumonia <b>on</b> the chest film”" in page.inner_text("#note-meta")
    assert page.is_disabled("#submit-review")
    save_artifact(page, tmp_path, "review-reopened.png")

    # Filters: by note id, and by date (the browser's local days).
    page.select_option("#filter-reviewed", "")
    page.fill("#filter-note-id", "B-2")
    page.click("#queue-filters button[type=submit]")
    settle(page)
    assert page.locator("#queue-list .qi-title").all_inner_texts() == ["Note B-2"]
    page.fill("#filter-note-id", "")
    yesterday = page.evaluate(
        "(() => { const d = new Date(); d.setDate(d.getDate() - 1);"
        " return d.toLocaleDateString('en-CA'); })()"
    )  # YYYY-MM-DD
    page.fill("#filter-from", yesterday)
    page.click("#queue-filters button[type=submit]")
    settle(page)
    assert page.locator("#queue-list .qi-title").all_inner_texts() == ["Note B-2", "Note A-1"]
    page.fill("#filter-to", yesterday)  # the whole of yesterday: nothing was coded then
    page.click("#queue-filters button[type=submit]")
    settle(page)
    assert page.inner_text("#queue-list") == "No predictions match these filters."


def test_keyboard_moves_decides_submits_and_goes_on(
    open_page: Callable[..., Any],
    make_live: Callable[..., LiveService],
    sqlite_url: str,
) -> None:
    live = make_live(sqlite_url)
    older = live.predict("Patient with fever and cough; history of hypertension.", note_id="K-1")
    live.predict("Diabetes and chest pain.", note_id="K-2")
    ranked = [code["code"] for code in older["codes"]]

    page = open_page(f"{live.base_url}/review")
    assert "Ctrl" in page.inner_text("footer.keys")  # the keys are documented on the page
    sign_in(page)
    settle(page)
    open_note(page, "K-1")
    focused = "document.activeElement.closest('li')?.dataset.code"
    assert page.evaluate(focused) == ranked[0]
    # Tab order within the list: a code, its Accept, its Reject, then the next code.
    control = (
        "[document.activeElement.closest('li')?.dataset.code, document.activeElement.dataset.role]"
    )
    order = []
    for _ in range(4):
        page.keyboard.press("Tab")
        order.append(tuple(page.evaluate(control)))
    assert order == [
        (ranked[0], "accept"),
        (ranked[0], "reject"),
        (ranked[1], "select"),
        (ranked[1], "accept"),
    ]
    page.keyboard.press("Escape")  # back to the selected code
    assert page.evaluate(focused) == ranked[0]

    page.keyboard.press("a")  # accept the first: A moves on to the next undecided code
    assert page.evaluate(focused) == ranked[1]
    page.keyboard.press("r")  # reject the second, and move on
    assert page.evaluate(focused) == ranked[2]
    page.keyboard.press("a")  # the last undecided one: nothing left to move to
    assert page.evaluate(focused) == ranked[2]
    page.keyboard.press("u")  # ... and undo it
    page.keyboard.press("k")
    assert page.evaluate(focused) == ranked[1]
    page.keyboard.press("/")
    assert page.evaluate("document.activeElement.id") == "code-search"
    page.keyboard.type("E11.9")
    page.wait_for_selector(
        "#code-search-results [role=option][aria-selected=true]:has-text('E11.9')"
    )
    page.keyboard.press("Enter")
    page.keyboard.press("Escape")
    assert page.evaluate("document.activeElement.dataset.role") == "select"
    page.keyboard.press("Control+Enter")
    settle(page)
    assert page.inner_text("#note-heading") == "Note K-2"
    assert live.feedback_rows(older["prediction_id"]) == [
        (ranked[0], "accepted", "coder-client", None, "coder-client"),
        (ranked[1], "rejected", "coder-client", None, "coder-client"),
        ("E11.9", "added", "coder-client", None, "coder-client"),
    ]

    # Leaving a note with unsaved decisions asks for a second N; the queue then has no other.
    page.focus("#code-list [data-role=select] >> nth=0")
    page.keyboard.press("a")
    page.keyboard.press("n")
    assert "unsaved decision" in page.inner_text("#alert")
    page.keyboard.press("n")
    settle(page)
    assert page.inner_text("#status") == "There is no next note in the queue."


# -- sign-in --------------------------------------------------------------------------------------


def test_wrong_keys_are_refused_and_the_key_lives_in_the_tab_only(
    open_page: Callable[..., Any],
    make_live: Callable[..., LiveService],
    sqlite_url: str,
    tmp_path: Path,
) -> None:
    live = make_live(sqlite_url)
    page = open_page(f"{live.base_url}/review")
    stored_key = "sessionStorage.getItem('plant-icd.review.key')"

    page.fill("#api-key", "picd_not-a-real-key")
    page.click("#sign-in-form button[type=submit]")
    page.wait_for_selector("#sign-in-error:has-text('not recognised')")
    assert page.is_hidden("#review-view")
    assert page.evaluate(stored_key) is None

    sign_in(page, "ehr")
    page.wait_for_selector("#sign-in-error:has-text('role ehr')")
    assert page.inner_text("#sign-in-error") == (
        "The key “ehr-client” has the role ehr, which may not review codes. The review page "
        "needs a key with the coder (or admin) role: ask an administrator for one."
    )
    assert page.is_hidden("#review-view")
    assert page.evaluate(stored_key) is None
    save_artifact(page, tmp_path, "review-sign-in-refused.png")

    sign_in(page, "coder")
    settle(page)
    assert page.evaluate(stored_key) == KEYS["coder"]
    assert page.evaluate("localStorage.length") == 0
    assert page.evaluate("document.cookie") == ""
    page.reload()  # same tab: still signed in
    settle(page)
    assert page.inner_text("#who-name") == "coder-client"

    other_tab = open_page(f"{live.base_url}/review")  # a new browser session knows no key
    assert other_tab.is_visible("#sign-in-form")
    assert other_tab.evaluate(stored_key) is None

    page.click("#sign-out")
    assert page.is_visible("#sign-in-form")
    assert page.evaluate(stored_key) is None


# -- pasting a note --------------------------------------------------------------------------------


def test_paste_a_note_with_an_admin_key_but_not_a_coder_key(
    open_page: Callable[..., Any],
    make_live: Callable[..., LiveService],
    sqlite_url: str,
) -> None:
    live = make_live(sqlite_url)
    coder = open_page(f"{live.base_url}/review")
    sign_in(coder, "coder")
    settle(coder)
    coder.click("#paste-section summary")
    assert coder.is_hidden("#paste-form")
    assert coder.inner_text("#paste-refused") == (
        "Your key's role (coder) may not code new notes: that needs the ehr or admin role."
    )

    admin = open_page(f"{live.base_url}/review")
    sign_in(admin, "admin")
    settle(admin)
    admin.click("#paste-section summary")
    admin.fill("#paste-text", "Paciente con neumonía y fiebre.")
    admin.fill("#paste-note-id", "pasted-1")
    admin.click("#paste-form button[type=submit]")
    settle(admin)
    assert admin.inner_text("#note-heading") == "Note pasted-1"
    codes = admin.locator("#code-list li").evaluate_all("els => els.map(e => e.dataset.code)")
    assert set(codes) >= {"J18.9", "R50.9"}
    assert admin.locator("#queue-list .qi-title").all_inner_texts() == ["Note pasted-1"]
    assert live.count("predictions") == 1
    with live.engine.connect() as connection:
        client = connection.exec_driver_sql("SELECT client, note_id FROM predictions").one()
    assert tuple(client) == ("admin-client", "pasted-1")


# -- markup in notes stays text --------------------------------------------------------------------


@pytest.mark.parametrize("bypass_csp", [False, True], ids=["csp", "without-csp"])
def test_markup_in_a_note_is_shown_as_text_and_runs_nothing(
    open_page: Callable[..., Any],
    make_live: Callable[..., LiveService],
    sqlite_url: str,
    tmp_path: Path,
    bypass_csp: bool,
) -> None:
    """With the CSP switched off too: the page itself never turns note text into HTML."""
    live = make_live(sqlite_url)
    live.predict(XSS_NOTE, note_id=XSS_NOTE_ID)
    page = open_page(f"{live.base_url}/review", bypass_csp=bypass_csp)
    sign_in(page)
    settle(page)

    assert page.text_content("#note-text") == XSS_NOTE
    assert page.get_by_text("<script>window.__pwned=1</script>", exact=False).is_visible()
    assert page.inner_text("#note-heading") == f"Note {XSS_NOTE_ID}"
    assert page.inner_text("#queue-list .qi-title") == f"Note {XSS_NOTE_ID}"
    assert page.evaluate("document.querySelectorAll('img, b, #note-text script').length") == 0
    page.wait_for_timeout(200)  # time for an image error handler, if an image had been made
    assert page.evaluate("typeof window.__pwned") == "undefined"
    if not bypass_csp:
        save_artifact(page, tmp_path, "review-markup-as-text.png")


def test_evidence_geometry_counts_code_points(
    open_page: Callable[..., Any], make_live: Callable[..., LiveService], sqlite_url: str
) -> None:
    live = make_live(sqlite_url)
    page = open_page(f"{live.base_url}/review")
    result = page.evaluate(
        """async () => {
            const m = await import(new URL('review/evidence.js', document.baseURI).href);
            const codes = [
                {code: 'A', description: 'a', highlights: [{start: 2, end: 5, weight: 0.6}]},
                {code: 'B', description: 'b', highlights: [{start: 4, end: 7, weight: 0.2}]},
            ];
            return {
                segments: m.segmentNote('🤒 abcdef', codes).map(
                    s => [s.start, s.end, s.text, s.covers.map(c => c.code)]),
                levels: [1, 0.75, 0.74, 0.5, 0.25, 0.24, 0].map(w => m.weightLevel(w, 1)),
            };
        }"""
    )
    # '🤒' is one code point (two UTF-16 units): offsets 2..5 are 'abc'.
    assert result["segments"] == [
        [0, 2, "🤒 ", []],
        [2, 4, "ab", ["A"]],
        [4, 5, "c", ["A", "B"]],
        [5, 7, "de", ["B"]],
        [7, 8, "f", []],
    ]
    assert result["levels"] == [4, 4, 3, 3, 2, 1, 1]


# -- the page's own headers and files (no browser) ----------------------------------------------


class _Markup(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.scripts: list[dict[str, str | None]] = []
        self.inline_script_text = ""
        self.handler_attributes: list[str] = []
        self.style_attributes = 0
        self.labels: set[str] = set()
        self.controls: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        self.handler_attributes += [name for name, _ in attrs if name.startswith("on")]
        self.style_attributes += "style" in named
        if tag == "script":
            self.scripts.append(named)
            self._in_script = True
        if tag == "label" and named.get("for"):
            self.labels.add(str(named["for"]))
        if tag in ("input", "select", "textarea"):
            self.controls.append(str(named.get("id")))

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script:
            self.inline_script_text += data


def test_review_page_is_served_under_a_strict_csp(sqlite_service: Service) -> None:
    response = sqlite_service.http.get("/review")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    policy = dict(
        part.strip().split(" ", 1)
        for part in response.headers["content-security-policy"].split(";")
    )
    assert policy["script-src"] == "'self'"
    assert policy["default-src"] == "'none'"
    assert policy["style-src"] == "'self'"
    assert policy["connect-src"] == "'self'"
    assert policy["form-action"] == "'none'"
    assert policy["frame-ancestors"] == "'none'"
    assert "unsafe" not in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"

    markup = _Markup()
    markup.feed(response.text)
    assert markup.scripts == [{"type": "module", "src": "review/app.js"}]
    assert markup.inline_script_text.strip() == ""
    assert markup.handler_attributes == []
    assert markup.style_attributes == 0
    assert set(markup.controls) <= markup.labels, "every form control has a label"

    for name, media_type in [
        ("app.js", "text/javascript; charset=utf-8"),
        ("api.js", "text/javascript; charset=utf-8"),
        ("evidence.js", "text/javascript; charset=utf-8"),
        ("review.css", "text/css; charset=utf-8"),
        ("icon.svg", "image/svg+xml"),
    ]:
        asset = sqlite_service.http.get(f"/review/{name}")
        assert asset.status_code == 200, name
        assert asset.headers["content-type"] == media_type
        assert (
            asset.headers["content-security-policy"] == response.headers["content-security-policy"]
        )


def test_only_the_pages_own_files_are_served(sqlite_service: Service) -> None:
    for path in (
        "/review/index.html",
        "/review/..%2Fapi%2Froutes%2Freview.py",
        "/review/%2e%2e%2fmain.py",
        "/review/app.py",
        "/review/missing.js",
        "/review/.hidden.js",
    ):
        assert sqlite_service.http.get(path).status_code == 404, path
    redirect = sqlite_service.http.get("/review/", follow_redirects=False)
    assert redirect.status_code == 308
    assert redirect.headers["location"] == "../review"


def test_page_sources_never_build_html_nor_fetch_elsewhere() -> None:
    sources = {path.name: path.read_text("utf-8") for path in STATIC_DIR.iterdir()}
    assert set(sources) == {
        "index.html",
        "app.js",
        "api.js",
        "evidence.js",
        "review.css",
        "icon.svg",
    }
    for name, source in sources.items():
        code = re.sub(r"//[^\n]*|/\*.*?\*/|<!--.*?-->", "", source, flags=re.S)
        for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
            assert sink not in code, (name, sink)
        assert "new Function" not in code, name
        # Only the SVG namespace may name a host; nothing is fetched from the network.
        assert re.findall(r"https?://(?!www\.w3\.org/2000/svg)", code) == [], name
