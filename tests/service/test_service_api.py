"""The API on SQLite and on PostgreSQL: predictions as the runtime computes them, recorded before
they are returned; reading them back; the review queue; codes; model information."""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from model.runtime import OnnxPredictor
from tests.service.service_testing import Service, headers, running_service

NOTE = "Patient admitted with fever and a dry cough. Paciente con fiebre."


def test_prediction_matches_the_runtime_and_is_recorded(service: Service, bundle_dir: Path) -> None:
    response = service.http.post(
        "/v1/predictions",
        json={"text": NOTE, "note_id": "note-1", "encounter_id": "enc-1", "top_k": 4},
        headers=headers("ehr"),
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert response.headers["location"] == f"/v1/predictions/{body['prediction_id']}"
    assert body["model"] == {"name": "tiny-plant", "version": "0.0.1-test"}
    assert (body["note_id"], body["encounter_id"]) == ("note-1", "enc-1")

    # What is served is what the runtime computes for the same note.
    runtime = OnnxPredictor(bundle_dir)
    expected = runtime.predict([NOTE], top_k=4)[0]
    thresholds = dict(zip(runtime.codes, runtime.thresholds.tolist(), strict=True))
    assert [code["code"] for code in body["codes"]] == [code.code for code in expected]
    assert [code["rank"] for code in body["codes"]] == [1, 2, 3, 4]
    for served, computed in zip(body["codes"], expected, strict=True):
        assert served["score"] == pytest.approx(computed.score, abs=1e-6)
        assert served["above_threshold"] == computed.above_threshold
        # Each code carries the threshold it was judged against.
        assert served["threshold"] == pytest.approx(thresholds[computed.code])
        assert served["above_threshold"] == (served["score"] >= served["threshold"])
        assert served["description"] == computed.description
        assert len(served["highlights"]) == len(computed.highlights)
        for highlight in served["highlights"]:
            # Offsets index the text exactly as sent.
            assert NOTE[highlight["start"] : highlight["end"]] == highlight["text"]
    # The two keyword codes lead, with their own words as evidence.
    by_code = {code["code"]: code for code in body["codes"]}
    assert {"R50.9", "R05"} <= set(by_code)
    fever_words = {h["text"].lower() for h in by_code["R50.9"]["highlights"]}
    assert fever_words & {"fever", "fiebre"}

    with service.engine.connect() as connection:
        row = (
            connection.execute(
                sa.text("SELECT * FROM predictions WHERE id = :id"), {"id": body["prediction_id"]}
            )
            .mappings()
            .one()
        )
        codes = connection.execute(
            sa.text(
                "SELECT code, rank FROM predicted_codes WHERE prediction_id = :id ORDER BY rank"
            ),
            {"id": body["prediction_id"]},
        ).all()
    assert row["note_text"] == NOTE
    assert row["note_sha256"] == hashlib.sha256(NOTE.encode()).hexdigest()
    assert row["note_chars"] == len(NOTE)
    assert row["client"] == "ehr-client"
    assert row["model_version"] == "0.0.1-test"
    assert row["top_k"] == 4
    assert [tuple(code) for code in codes] == [(c["code"], c["rank"]) for c in body["codes"]]


def test_batch_keeps_order_and_records_each_note(service: Service) -> None:
    notes = [
        {"text": "Paciente con hipertensión.", "note_id": "a", "top_k": 1},
        {"text": "History of diabetes.", "note_id": "b"},
        {"text": "Chest pain today.", "note_id": "c", "top_k": 2},
    ]
    response = service.http.post(
        "/v1/predictions/batch", json={"notes": notes}, headers=headers("ehr")
    )
    assert response.status_code == 201, response.text
    predictions = response.json()["predictions"]
    assert [p["note_id"] for p in predictions] == ["a", "b", "c"]
    assert [len(p["codes"]) for p in predictions] == [1, 6, 2]  # default_top_k 10 > 6 codes
    assert [p["codes"][0]["code"] for p in predictions] == ["I10", "E11.9", "R07.9"]
    assert len({p["prediction_id"] for p in predictions}) == 3
    assert service.count("predictions") == 3
    assert service.count("predicted_codes") == 9


def test_read_prediction_returns_note_codes_and_history(service: Service) -> None:
    created = service.predict(NOTE, note_id="n-7", top_k=3)
    response = service.http.get(
        f"/v1/predictions/{created['prediction_id']}", headers=headers("coder")
    )
    assert response.status_code == 200, response.text
    detail = response.json()
    assert detail["note_text"] == NOTE
    assert detail["note_sha256"] == hashlib.sha256(NOTE.encode()).hexdigest()
    assert detail["client"] == "ehr-client"
    assert detail["codes"] == created["codes"]  # highlights' text cut again from the note
    assert detail["feedback"] == []
    assert detail["review"] == {
        "reviewed": False,
        "status": "unreviewed",
        "undecided": [code["code"] for code in created["codes"] if code["above_threshold"]],
        "decisions": [],
        "final_codes": [],
    }


def test_review_queue_filters_and_pages(service: Service) -> None:
    first = service.predict("Fever.", note_id="queue-1")
    second = service.predict("Cough.", note_id="queue-2")
    third = service.predict("Diabetes.", note_id="queue-3")
    assert service.feedback(second["prediction_id"], ("R05", "accepted")).status_code == 201

    def listing(**params: Any) -> dict[str, Any]:
        response = service.http.get("/v1/predictions", params=params, headers=headers("coder"))
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def ids(page: dict[str, Any]) -> list[str]:
        return [item["prediction_id"] for item in page["items"]]

    everything = listing()
    assert everything["total"] == 3
    assert ids(everything) == [
        third["prediction_id"],
        second["prediction_id"],
        first["prediction_id"],
    ]
    assert ids(listing(order="oldest")) == ids(everything)[::-1]
    reviewed = listing(reviewed=True)
    assert ids(reviewed) == [second["prediction_id"]]
    assert reviewed["items"][0]["feedback_events"] == 1
    assert reviewed["items"][0]["reviewed"] is True
    assert reviewed["items"][0]["review_status"] == "complete"
    assert ids(listing(reviewed=False)) == [third["prediction_id"], first["prediction_id"]]
    assert ids(listing(note_id="queue-1")) == [first["prediction_id"]]
    page = listing(limit=2, offset=2)
    assert (page["total"], ids(page)) == (3, [first["prediction_id"]])

    now = datetime.now(UTC)
    assert listing(created_from=(now + timedelta(hours=1)).isoformat())["total"] == 0
    assert listing(created_to=(now + timedelta(hours=1)).isoformat())["total"] == 3
    assert listing(created_from=(now - timedelta(hours=1)).isoformat())["total"] == 3
    # A time without a zone is UTC.
    naive_future = (now + timedelta(hours=1)).replace(tzinfo=None).isoformat()
    assert listing(created_to=naive_future)["total"] == 3


def test_note_text_storage_off_keeps_only_the_hash(make_settings: Any, database_url: str) -> None:
    with running_service(make_settings(database_url, store_note_text=False)) as service:
        created = service.predict(NOTE)
        assert created["codes"][0]["highlights"][0]["text"]  # the caller still gets evidence
        detail = service.http.get(
            f"/v1/predictions/{created['prediction_id']}", headers=headers("coder")
        ).json()
        with service.engine.connect() as connection:
            stored = connection.execute(
                sa.text("SELECT note_text, note_sha256 FROM predictions")
            ).one()
            highlights = connection.execute(sa.text("SELECT highlights FROM predicted_codes")).all()
    assert detail["note_text"] is None
    assert stored.note_text is None
    assert stored.note_sha256 == hashlib.sha256(NOTE.encode()).hexdigest()
    assert all(h["text"] is None for code in detail["codes"] for h in code["highlights"])
    assert [h["start"] for h in detail["codes"][0]["highlights"]] == [
        h["start"] for h in created["codes"][0]["highlights"]
    ]
    # No note text hides in the stored highlights either.
    assert "fever" not in repr(highlights).lower()


def test_code_lookup_and_search(service: Service) -> None:
    response = service.http.get("/v1/codes/r509", headers=headers("ehr"))
    assert response.status_code == 200, response.text
    info = response.json()
    assert (info["code"], info["description"], info["kind"]) == (
        "R50.9",
        "Fever, unspecified",
        "code",
    )
    assert (info["in_model"], info["train_count"], info["valid"]) == (True, 10, True)
    assert info["category"]["code"] == "R50"

    outside = service.http.get("/v1/codes/N44.8", headers=headers("coder")).json()
    assert (outside["in_model"], outside["train_count"]) == (False, None)

    missing = service.http.get("/v1/codes/R99.99", headers=headers("coder"))
    assert missing.status_code == 404
    assert "R99.99" in missing.json()["detail"]

    search = service.http.get(
        "/v1/codes", params={"q": "R50", "limit": 5}, headers=headers("coder")
    ).json()
    assert search["query"] == "R50"
    assert search["results"][0]["code"] == "R50"
    assert all(result["code"].startswith("R50") for result in search["results"])
    assert len(search["results"]) == 5


def test_model_information(service: Service) -> None:
    response = service.http.get(
        "/v1/model", params={"include_codes": True}, headers=headers("admin")
    )
    assert response.status_code == 200, response.text
    model = response.json()
    assert (model["name"], model["version"], model["code_system"]) == (
        "tiny-plant",
        "0.0.1-test",
        "icd10cm",
    )
    assert model["n_codes"] == 6
    assert model["dev_metrics"] == {"micro_f1": 0.5}
    # The factory's thresholds: 0.3 + 0.1 * (index % 4).
    assert [code["threshold"] for code in model["codes"]] == pytest.approx(
        [0.3, 0.4, 0.5, 0.6, 0.3, 0.4]
    )
    assert [code["train_count"] for code in model["codes"]] == [10, 11, 12, 13, 14, 15]
    assert len(model["graph_sha256"]) == 64
    # The factory's graph decodes every code, in float32.
    assert (model["precision"], model["shortlist_size"]) == ("fp32", None)


def test_request_id_is_echoed_or_made(service: Service) -> None:
    given = service.http.get("/healthz", headers={"X-Request-ID": "abc-123"})
    assert given.headers["x-request-id"] == "abc-123"
    made = service.http.get("/v1/predictions/" + str(uuid.uuid4()), headers=headers("coder"))
    assert made.status_code == 404
    assert made.headers["x-request-id"] == made.json()["request_id"]
    assert len(made.headers["x-request-id"]) == 32
    # An id that could corrupt a log line is replaced, not echoed.
    odd = service.http.get("/healthz", headers={"X-Request-ID": 'a b"c'})
    assert odd.headers["x-request-id"] != 'a b"c'
