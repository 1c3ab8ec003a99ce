"""Every bad input gets a 4xx whose message says what to fix, and nothing is recorded for it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from service.core.config import Settings
from tests.service.service_testing import Service, headers, running_service

JSON = {"Content-Type": "application/json"}


@pytest.fixture
def small_limits(make_settings: Callable[..., Settings], sqlite_url: str) -> Iterator[Service]:
    with running_service(
        make_settings(sqlite_url, max_note_chars=50, max_batch_notes=3)
    ) as service:
        yield service


def _post(service: Service, path: str, **kwargs: Any) -> tuple[int, dict[str, Any]]:
    response = service.http.post(path, headers={**headers("ehr"), **JSON}, **kwargs)
    return response.status_code, response.json()


@pytest.mark.parametrize("text", ["", "   ", "\n\t  \n"])
def test_empty_or_blank_text_is_422(small_limits: Service, text: str) -> None:
    status, body = _post(small_limits, "/v1/predictions", json={"text": text})
    assert status == 422
    assert body["detail"] == "body.text: text is empty or only white space: send the note's text"
    assert body["request_id"]


def test_text_over_the_limit_is_413(small_limits: Service) -> None:
    status, body = _post(small_limits, "/v1/predictions", json={"text": "fever " * 9})  # 54
    assert status == 413
    assert body["detail"] == (
        "the note has 54 characters; the limit is 50: send a shorter excerpt or split the note"
    )
    # Exactly at the limit is fine.
    status, _ = _post(small_limits, "/v1/predictions", json={"text": "f" * 50})
    assert status == 201


def test_batch_limits(small_limits: Service) -> None:
    notes = [{"text": "fever"}] * 4
    status, body = _post(small_limits, "/v1/predictions/batch", json={"notes": notes})
    assert status == 413
    assert body["detail"] == "the batch has 4 notes; the limit is 3: split it into smaller batches"

    status, body = _post(
        small_limits, "/v1/predictions/batch", json={"notes": [{"text": "ok"}, {"text": "x" * 51}]}
    )
    assert status == 413
    assert str(body["detail"]).startswith("note 1 has 51 characters")

    status, body = _post(
        small_limits, "/v1/predictions/batch", json={"notes": [{"text": "ok"}, {"text": " "}]}
    )
    assert status == 422
    assert str(body["detail"]).startswith("body.notes.1.text: text is empty")

    status, body = _post(small_limits, "/v1/predictions/batch", json={"notes": []})
    assert status == 422
    assert "body.notes" in str(body["detail"])
    assert small_limits.count("predictions") == 0  # nothing of a rejected batch is recorded


def test_invalid_json_is_422_with_the_position(small_limits: Service) -> None:
    status, body = _post(small_limits, "/v1/predictions", content=b'{"text": "fever",}')
    assert status == 422
    assert "not valid JSON" in str(body["detail"])
    assert "character 17" in str(body["detail"])


def test_invalid_utf8_is_400(small_limits: Service) -> None:
    status, body = _post(small_limits, "/v1/predictions", content=b'{"text": "fi\xe8vre"}')
    assert status == 400
    assert body["detail"] == (
        "the request body is not valid UTF-8 (byte 0xe8 at position 12): send JSON encoded as UTF-8"
    )


def test_body_that_is_not_a_json_object(small_limits: Service) -> None:
    response = small_limits.http.post(
        "/v1/predictions",
        content=b"fever and cough",
        headers={**headers("ehr"), "Content-Type": "text/plain"},
    )
    assert response.status_code == 422
    assert "JSON object" in response.json()["detail"]
    status, body = _post(small_limits, "/v1/predictions", json=["fever"])
    assert status == 422
    assert "JSON object" in str(body["detail"])


@pytest.mark.parametrize(
    ("note", "fragment"),
    [
        ({"text": "fever\u0000"}, "NUL character"),
        ({"text": "fever", "top_k": 0}, "body.top_k"),
        ({"text": "fever", "txt": "typo"}, "body.txt"),
        ({"text": 42}, "body.text"),
        ({"note_id": "n-1"}, "body.text: Field required"),
        ({"text": "fever", "note_id": ""}, "body.note_id"),
    ],
)
def test_malformed_fields_are_422(small_limits: Service, note: object, fragment: str) -> None:
    status, body = _post(small_limits, "/v1/predictions", json=note)
    assert status == 422
    assert fragment in str(body["detail"])


def test_lone_surrogate_is_422(small_limits: Service) -> None:
    # JSON may escape a lone surrogate; it is not valid Unicode and cannot be stored.
    status, body = _post(small_limits, "/v1/predictions", content=b'{"text": "fever \\ud800"}')
    assert status == 422
    assert "unpaired surrogate" in str(body["detail"])


def test_unknown_and_malformed_prediction_ids(small_limits: Service) -> None:
    missing = small_limits.http.get(
        "/v1/predictions/3f2b8a34-5f0e-4d6c-9a51-2f3f0c7e1a10", headers=headers("coder")
    )
    assert missing.status_code == 404
    assert missing.json()["detail"].startswith(
        "no prediction with id 3f2b8a34-5f0e-4d6c-9a51-2f3f0c7e1a10"
    )
    malformed = small_limits.http.get("/v1/predictions/42", headers=headers("coder"))
    assert malformed.status_code == 422
    assert "path.prediction_id" in malformed.json()["detail"]


def test_bad_query_parameters(small_limits: Service) -> None:
    response = small_limits.http.get(
        "/v1/predictions",
        params={"limit": 0, "created_from": "yesterday"},
        headers=headers("coder"),
    )
    assert response.status_code == 422
    locations = [problem["loc"] for problem in response.json()["errors"]]
    assert ["query", "limit"] in locations and ["query", "created_from"] in locations


def test_body_far_over_any_valid_request_is_413_before_parsing(small_limits: Service) -> None:
    # 3 notes x (50 chars x 6 bytes + 4096) + 65536 = 78724 bytes is the most a valid call needs.
    status, body = _post(small_limits, "/v1/predictions", content=b"[" + b" " * 80_000 + b"]")
    assert status == 413
    assert body["detail"] == ("the request body is over 78724 bytes: send fewer or shorter notes")
    # Without a declared length (chunked), the body is counted as it arrives.
    chunks = iter([b"[", b" " * 40_000, b" " * 40_000, b"]"])
    status, body = _post(small_limits, "/v1/predictions", content=chunks)
    assert status == 413
