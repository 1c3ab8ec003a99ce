"""Coder feedback on both backends: an append-only audit trail where the latest decision per code
wins, codes checked against the catalogue, and an export the JSONL corpus reader reads back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.service.service_testing import Service, headers, running_service
from training.corpora.jsonl import read_jsonl

NOTE = "Patient with fever and cough; history of hypertension."


def _events(service: Service, prediction_id: str) -> list[tuple[Any, ...]]:
    with service.engine.connect() as connection:
        return [
            tuple(row)
            for row in connection.execute(
                sa.text(
                    "SELECT id, code, decision, coder_id, comment, created_at FROM feedback_events"
                    " WHERE prediction_id = :id ORDER BY id"
                ),
                {"id": prediction_id},
            )
        ]


def test_feedback_is_append_only_and_the_latest_decision_wins(service: Service) -> None:
    prediction = service.predict(NOTE, top_k=3)
    suggested = [code["code"] for code in prediction["codes"]]
    assert suggested[:2] == ["R50.9", "R05"]
    pid = prediction["prediction_id"]

    first = service.feedback(
        pid,
        ("r50.9", "accepted"),  # any spelling of a suggested code
        ("R05", "rejected"),
        ("J18.9", "added"),  # in the model but not suggested here
        ("N44.8", "added"),  # not in the model: the catalogue decides
        comment="first pass",
    )
    assert first.status_code == 201, first.text
    recorded = first.json()["recorded"]
    assert [(e["code"], e["decision"]) for e in recorded] == [
        ("R50.9", "accepted"),
        ("R05", "rejected"),
        ("J18.9", "added"),
        ("N44.8", "added"),
    ]
    assert first.json()["review"]["final_codes"] == ["R50.9", "J18.9", "N44.8"]
    before = _events(service, pid)

    # A second coder changes their mind on two codes, including removing an added one.
    second = service.feedback(pid, ("R05", "accepted"), ("N44.8", "rejected"), coder_id="coder-2")
    assert second.status_code == 201, second.text
    review = second.json()["review"]
    assert review["final_codes"] == ["R50.9", "R05", "J18.9"]
    current = {d["code"]: (d["decision"], d["coder_id"]) for d in review["decisions"]}
    assert current == {
        "R50.9": ("accepted", "coder-1"),
        "R05": ("accepted", "coder-2"),
        "J18.9": ("added", "coder-1"),
        "N44.8": ("rejected", "coder-2"),
    }

    after = _events(service, pid)
    assert after[: len(before)] == before  # earlier events untouched
    assert [(e[1], e[2]) for e in after[len(before) :]] == [
        ("R05", "accepted"),
        ("N44.8", "rejected"),
    ]

    detail = service.http.get(f"/v1/predictions/{pid}", headers=headers("coder")).json()
    assert [(e["code"], e["decision"]) for e in detail["feedback"]] == [(e[1], e[2]) for e in after]
    assert detail["review"] == review
    assert service.metric("plant_icd_feedback_decisions_total", decision="accepted") == 2
    assert service.metric("plant_icd_feedback_decisions_total", decision="rejected") == 2
    assert service.metric("plant_icd_feedback_decisions_total", decision="added") == 2


def test_feedback_rejects_what_it_cannot_record(service: Service) -> None:
    pid = service.predict(NOTE, top_k=2)["prediction_id"]  # suggests R50.9, R05

    unknown = service.feedback(pid, ("R50.9", "accepted"), ("XYZ.123", "added"))
    assert unknown.status_code == 422
    assert "XYZ.123" in unknown.json()["detail"]
    assert [problem["code"] for problem in unknown.json()["errors"]] == ["XYZ.123"]

    not_suggested = service.feedback(pid, ("I10", "accepted"))
    assert not_suggested.status_code == 422
    assert "'I10' was not suggested" in not_suggested.json()["detail"]
    assert "added" in not_suggested.json()["detail"]

    chapter = service.feedback(pid, ("R00-R99", "added"))
    assert chapter.status_code == 422

    twice = service.feedback(pid, ("R05", "accepted"), ("r05", "rejected"))
    assert twice.status_code == 422
    assert "twice" in twice.json()["detail"]

    missing = service.feedback("00000000-0000-4000-8000-000000000000", ("R05", "accepted"))
    assert missing.status_code == 404

    # Nothing of a rejected request was recorded.
    assert service.count("feedback_events") == 0


def test_export_is_readable_by_the_jsonl_corpus_reader(service: Service, tmp_path: Path) -> None:
    reviewed = service.predict(NOTE, note_id="n-1", top_k=3)
    service.feedback(reviewed["prediction_id"], ("R50.9", "accepted"), ("E11.9", "added"))
    service.feedback(reviewed["prediction_id"], ("R05", "accepted"))
    all_rejected = service.predict("Dolor torácico.", note_id="n-2", top_k=1)
    service.feedback(all_rejected["prediction_id"], (all_rejected["codes"][0]["code"], "rejected"))
    service.predict("Never reviewed.", note_id="n-3")

    response = service.http.get("/v1/feedback/export", headers=headers("admin"))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/x-ndjson")
    assert response.headers["x-export-skipped-without-text"] == "0"
    path = tmp_path / "export.jsonl"
    path.write_bytes(response.content)

    documents = read_jsonl(path)
    assert [(d.id, d.text, d.codes) for d in documents] == [
        (reviewed["prediction_id"], NOTE, ("R50.9", "R05", "E11.9")),
        (all_rejected["prediction_id"], "Dolor torácico.", ()),
    ]


def test_export_skips_notes_whose_text_was_not_stored(
    make_settings: Any, database_url: str, tmp_path: Path
) -> None:
    with running_service(make_settings(database_url, store_note_text=False)) as service:
        pid = service.predict(NOTE)["prediction_id"]
        assert service.feedback(pid, ("R50.9", "accepted")).status_code == 201
        response = service.http.get("/v1/feedback/export", headers=headers("admin"))
    assert response.status_code == 200
    assert response.text == ""
    assert response.headers["x-export-skipped-without-text"] == "1"


# -- explicit review decisions ------------------------------------------------------------------


@pytest.fixture
def review_service(
    make_settings: Any, database_url: str, review_bundle_dir: Path
) -> Iterator[Service]:
    """The app on each backend with a bundle that suggests R50.9 and R05 above threshold."""
    with running_service(make_settings(database_url, bundle_dir=review_bundle_dir)) as started:
        yield started


def _review(service: Service, prediction_id: str) -> dict[str, Any]:
    response = service.http.get(f"/v1/predictions/{prediction_id}", headers=headers("coder"))
    assert response.status_code == 200, response.text
    review: dict[str, Any] = response.json()["review"]
    return review


def _queue(service: Service, **params: Any) -> list[dict[str, Any]]:
    response = service.http.get("/v1/predictions", params=params, headers=headers("coder"))
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def test_a_final_review_must_decide_every_suggestion_above_threshold(
    review_service: Service,
) -> None:
    service = review_service
    prediction = service.predict(NOTE, top_k=3)
    above = [code["code"] for code in prediction["codes"] if code["above_threshold"]]
    assert above == ["R50.9", "R05"]
    pid = prediction["prediction_id"]
    assert _review(service, pid)["undecided"] == ["R50.9", "R05"]

    # Rejecting one code and submitting used to drop the other silently.
    refused = service.feedback(pid, ("R50.9", "rejected"))
    assert refused.status_code == 422
    body = refused.json()
    assert "R05" in body["detail"] and "undecided" in body["detail"]
    assert '"final": false' in body["detail"]
    assert [problem["code"] for problem in body["errors"]] == ["R05"]
    assert service.count("feedback_events") == 0

    # Saving progress is allowed; the note stays in the queue, marked in progress.
    progress = service.feedback(pid, ("R50.9", "rejected"), final=False)
    assert progress.status_code == 201, progress.text
    review = progress.json()["review"]
    assert (review["status"], review["reviewed"], review["undecided"]) == (
        "in_progress",
        False,
        ["R05"],
    )
    (queued,) = _queue(service, reviewed=False)
    assert (queued["review_status"], queued["undecided"]) == ("in_progress", ["R05"])
    assert _queue(service, reviewed=True) == []

    # A later final submission completes it by deciding the rest.
    done = service.feedback(pid, ("R05", "accepted"))
    assert done.status_code == 201, done.text
    review = done.json()["review"]
    assert (review["status"], review["reviewed"], review["undecided"]) == ("complete", True, [])
    assert review["final_codes"] == ["R05"]
    (listed,) = _queue(service, reviewed=True)
    assert listed["review_status"] == "complete"


def test_undecided_accept_or_reject_decides_the_rest(review_service: Service) -> None:
    service = review_service
    accepted = service.predict(NOTE, top_k=3)["prediction_id"]
    response = service.feedback(accepted, ("I10", "accepted"), undecided="accept")
    assert response.status_code == 201, response.text
    recorded = [(event["code"], event["decision"]) for event in response.json()["recorded"]]
    # Below threshold, I10 was suggested too, so it can be accepted; the rest are recorded as
    # ordinary decisions, in rank order.
    assert recorded == [("I10", "accepted"), ("R50.9", "accepted"), ("R05", "accepted")]
    assert response.json()["review"]["final_codes"] == ["R50.9", "R05", "I10"]

    rejected = service.predict(NOTE, top_k=3)["prediction_id"]
    response = service.http.post(
        f"/v1/predictions/{rejected}/feedback",
        json={"coder_id": "coder-1", "decisions": [], "undecided": "reject"},
        headers=headers("coder"),
    )
    assert response.status_code == 201, response.text
    assert response.json()["review"]["status"] == "complete"
    assert response.json()["review"]["final_codes"] == []

    empty = service.http.post(
        f"/v1/predictions/{rejected}/feedback",
        json={"coder_id": "coder-1", "decisions": []},
        headers=headers("coder"),
    )
    assert empty.status_code == 422
    assert "decisions is empty" in empty.json()["detail"]

    unknown_choice = service.http.post(
        f"/v1/predictions/{rejected}/feedback",
        json={"coder_id": "coder-1", "decisions": [], "undecided": "maybe"},
        headers=headers("coder"),
    )
    assert unknown_choice.status_code == 422
    assert "undecided" in unknown_choice.json()["detail"]


def test_export_leaves_out_partially_decided_notes_and_counts_them(
    review_service: Service, tmp_path: Path
) -> None:
    service = review_service
    complete = service.predict(NOTE, note_id="complete", top_k=3)["prediction_id"]
    assert service.feedback(complete, ("R50.9", "accepted"), ("R05", "rejected")).status_code == 201
    partial = service.predict(NOTE, note_id="partial", top_k=3)["prediction_id"]
    saved = service.feedback(partial, ("R50.9", "accepted"), final=False)
    assert saved.status_code == 201, saved.text
    service.predict(NOTE, note_id="untouched", top_k=3)

    response = service.http.get("/v1/feedback/export", headers=headers("admin"))
    assert response.status_code == 200, response.text
    assert response.headers["x-export-skipped-incomplete"] == "1"
    assert response.headers["x-export-skipped-without-text"] == "0"
    path = tmp_path / "export.jsonl"
    path.write_bytes(response.content)
    assert [(d.id, d.codes) for d in read_jsonl(path)] == [(complete, ("R50.9",))]


def test_an_invalid_code_is_named_once(service: Service) -> None:
    pid = service.predict(NOTE, top_k=2)["prediction_id"]
    response = service.feedback(pid, ("XYZ.99", "added"))
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert detail.count("XYZ.99") == 1, detail
    assert detail.startswith("'XYZ.99' is not a valid ICD-10-CM code: ")
