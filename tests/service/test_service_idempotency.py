"""Idempotent retries on both prediction routes: a retry with the same Idempotency-Key returns the
original predictions and records nothing new; the same key with another body is 422; keys are
per key holder and expire after the window; each delivered answer is marked in the audit log."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from service.core.config import Settings
from service.db.models import utc_now
from tests.service.service_testing import Service, headers, running_service

NOTE = {"text": "Patient admitted with fever and a dry cough. Paciente con fiebre.", "top_k": 4}


def _post(
    service: Service, path: str, body: Any, key: str | bytes | None, role: str = "ehr"
) -> Any:
    extra = {} if key is None else {"Idempotency-Key": key}
    return service.http.post(path, json=body, headers={**headers(role), **extra})


def test_a_retry_returns_the_original_prediction(service: Service) -> None:
    first = _post(service, "/v1/predictions", NOTE, "retry-1")
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    again = _post(service, "/v1/predictions", NOTE, "retry-1")
    assert again.status_code == 201, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["location"] == first.headers["location"]
    assert again.json() == first.json()  # same id, codes, scores, highlights and time
    assert service.count("predictions") == 1

    other_body = _post(service, "/v1/predictions", {**NOTE, "top_k": 5}, "retry-1")
    assert other_body.status_code == 422
    assert "already used with a different request" in other_body.json()["detail"]
    as_batch = _post(service, "/v1/predictions/batch", {"notes": [NOTE]}, "retry-1")
    assert as_batch.status_code == 422
    assert service.count("predictions") == 1

    # Without a key every call is a new prediction, as before.
    assert _post(service, "/v1/predictions", NOTE, None).status_code == 201
    assert _post(service, "/v1/predictions", NOTE, None).status_code == 201
    assert service.count("predictions") == 3


def test_a_batch_retry_returns_the_original_batch(service: Service) -> None:
    notes = {"notes": [NOTE, {"text": "Chest pain today.", "note_id": "b"}]}
    first = _post(service, "/v1/predictions/batch", notes, "batch-7")
    again = _post(service, "/v1/predictions/batch", notes, "batch-7")
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert service.count("predictions") == 2
    reordered = {"notes": list(reversed(notes["notes"]))}
    assert _post(service, "/v1/predictions/batch", reordered, "batch-7").status_code == 422


def test_keys_belong_to_their_key_holder(service: Service) -> None:
    ehr = _post(service, "/v1/predictions", NOTE, "shared-key", role="ehr")
    admin = _post(service, "/v1/predictions", NOTE, "shared-key", role="admin")
    assert (ehr.status_code, admin.status_code) == (201, 201)
    assert "idempotent-replayed" not in admin.headers
    assert ehr.json()["prediction_id"] != admin.json()["prediction_id"]


def test_a_key_expires_after_the_window(
    make_settings: Callable[..., Settings], database_url: str
) -> None:
    with running_service(make_settings(database_url, idempotency_window_hours=24)) as service:
        first = _post(service, "/v1/predictions", NOTE, "old-key").json()["prediction_id"]
        with service.engine.begin() as connection:
            connection.execute(
                sa.text("UPDATE predictions SET created_at = :then"),
                {"then": utc_now() - timedelta(hours=25)},
            )
        again = _post(service, "/v1/predictions", NOTE, "old-key")
        assert again.status_code == 201
        assert "idempotent-replayed" not in again.headers
        assert again.json()["prediction_id"] != first
        with service.engine.connect() as connection:
            keys = dict(
                connection.execute(sa.text("SELECT id, idempotency_key FROM predictions")).all()
            )
    assert keys == {first: None, again.json()["prediction_id"]: "old-key"}


def test_concurrent_retries_make_one_prediction(service: Service) -> None:
    answers: list[Any] = []
    start = threading.Barrier(4)

    def send() -> None:
        start.wait()
        answers.append(_post(service, "/v1/predictions", NOTE, "raced"))

    threads = [threading.Thread(target=send) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [answer.status_code for answer in answers] == [201] * 4
    assert len({answer.json()["prediction_id"] for answer in answers}) == 1
    assert sum("idempotent-replayed" in answer.headers for answer in answers) == 3
    assert service.count("predictions") == 1


def test_a_replay_is_whole_without_stored_text(
    make_settings: Callable[..., Settings], sqlite_url: str
) -> None:
    with running_service(make_settings(sqlite_url, store_note_text=False)) as service:
        first = _post(service, "/v1/predictions", NOTE, "no-text")
        again = _post(service, "/v1/predictions", NOTE, "no-text")
    assert again.json() == first.json()
    texts = [h["text"] for code in again.json()["codes"] for h in code["highlights"]]
    assert texts and all(texts)


@pytest.mark.parametrize("key", ["", "has space", "x" * 201, "naïve".encode()])
def test_a_malformed_key_is_422(sqlite_service: Service, key: str | bytes) -> None:
    response = _post(sqlite_service, "/v1/predictions", NOTE, key)
    assert response.status_code == 422, response.text
    assert "Idempotency-Key" in response.json()["detail"]


def test_answers_are_marked_delivered_and_abstentions_kept(service: Service) -> None:
    delivered = service.predict(NOTE["text"])
    abstained = service.predict("fever")
    with service.engine.connect() as connection:
        rows = dict(connection.execute(sa.text("SELECT id, delivered_at FROM predictions")).all())
    assert rows[delivered["prediction_id"]] is not None
    assert rows[abstained["prediction_id"]] is not None
    detail = service.http.get(
        f"/v1/predictions/{abstained['prediction_id']}", headers=headers("coder")
    )
    assert detail.json()["abstention"] == abstained["abstention"] is not None
