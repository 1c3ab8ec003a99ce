"""Defects a hospital's reliability and security review found (issue 13), each pinned by a test:
notes without letters, too little text to code, dates at the calendar's edges, loose `top_k`,
a client-chosen coder identity, HEAD on health routes, cache and sniffing headers, loose CORS
origins, the body read before the key was checked, and unthrottled key guessing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import sqlalchemy as sa
from pydantic import ValidationError

from service.api.middleware import FailedKeyThrottle
from service.core.config import Settings
from tests.service.service_testing import Service, headers, running_service

NOTE = "Patient admitted with fever and a dry cough. Paciente con fiebre."


# -- notes the model must not code --------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    ["\u200b\u200b", "\u200b \u200d\ufeff", "12345 678", "-- !! ** //", "\u2060\u00a0\u200b"],
)
def test_a_note_without_letters_is_422(sqlite_service: Service, text: str) -> None:
    response = sqlite_service.http.post(
        "/v1/predictions", json={"text": text}, headers=headers("ehr")
    )
    assert response.status_code == 422, response.text
    assert "no letters in any script" in response.json()["detail"]
    assert sqlite_service.count("predictions") == 0


@pytest.mark.parametrize("text", ["发热 咳嗽 高血压", "Лихорадка и кашель", "حمى وسعال"])
def test_letters_of_any_script_are_a_note(sqlite_service: Service, text: str) -> None:
    response = sqlite_service.http.post(
        "/v1/predictions", json={"text": text}, headers=headers("ehr")
    )
    assert response.status_code == 201, response.text


def test_too_little_known_text_abstains_and_says_why(sqlite_service: Service) -> None:
    # "fever" alone drives R50.9 above its threshold in the tiny model...
    alone = sqlite_service.http.post(
        "/v1/predictions", json={"text": "fever", "top_k": 6}, headers=headers("ehr")
    )
    assert alone.status_code == 201, alone.text
    body = alone.json()
    assert body["codes"], "the ranking is still shown"
    assert not any(code["above_threshold"] for code in body["codes"])
    assert "1 word token(s) the model knows; at least 3" in body["abstention"]

    # ... and a note with enough text to read is coded as before.
    full = sqlite_service.predict(NOTE, top_k=6)
    assert full["abstention"] is None
    assert any(code["above_threshold"] for code in full["codes"])


def test_the_floor_can_be_switched_off(
    make_settings: Callable[..., Settings], sqlite_url: str
) -> None:
    with running_service(make_settings(sqlite_url, min_note_tokens=0)) as service:
        body = service.predict("fever", top_k=6)
    assert body["abstention"] is None
    assert any(code["above_threshold"] for code in body["codes"])


# -- strict input -------------------------------------------------------------------------------


@pytest.mark.parametrize("top_k", ["5", True, 2.0, 2.5])
def test_top_k_must_be_an_integer(sqlite_service: Service, top_k: object) -> None:
    response = sqlite_service.http.post(
        "/v1/predictions", json={"text": NOTE, "top_k": top_k}, headers=headers("ehr")
    )
    assert response.status_code == 422, response.text
    assert "body.top_k" in response.json()["detail"]


@pytest.mark.parametrize(
    ("name", "moment"),
    [
        ("created_from", "9999-12-31T23:59:59-14:00"),
        ("created_to", "9999-12-31T23:59:59-14:00"),
        ("created_from", "0001-01-01T00:00:00+14:00"),
        ("created_to", "0001-01-01T00:00:00+14:00"),
        ("created_from", "9999-12-31T23:59:59.999999"),
        ("created_to", "0001-01-01T00:00:00Z"),
    ],
)
def test_dates_at_the_calendar_edges_are_no_500(service: Service, name: str, moment: str) -> None:
    service.predict(NOTE)
    queue = service.http.get("/v1/predictions", params={name: moment}, headers=headers("coder"))
    assert queue.status_code == 200, queue.text
    # A bound past every date keeps everything on one side of it.
    expected = 1 if (name == "created_to") == moment.startswith("9999") else 0
    assert queue.json()["total"] == expected
    export = service.http.get(
        "/v1/feedback/export", params={name: moment}, headers=headers("admin")
    )
    assert export.status_code == 200, export.text


# -- the audit identity -------------------------------------------------------------------------


def test_the_recorded_coder_is_the_key_not_the_body(service: Service) -> None:
    prediction_id = service.predict(NOTE)["prediction_id"]
    blank = service.feedback(prediction_id, ("R05", "accepted"), coder_id="   ", final=False)
    assert blank.status_code == 422, blank.text
    assert "body.coder_id" in blank.json()["detail"]

    named = service.feedback(
        prediction_id, ("R05", "accepted"), coder_id="Dr Ana Ruiz", final=False
    )
    assert named.status_code == 201, named.text
    (event,) = named.json()["recorded"]
    assert (event["coder"], event["coder_id"]) == ("coder-client", "Dr Ana Ruiz")

    # No display name; this completes the review.
    body = {"decisions": [{"code": "R05", "decision": "rejected"}], "undecided": "accept"}
    unnamed = service.http.post(
        f"/v1/predictions/{prediction_id}/feedback", json=body, headers=headers("coder")
    )
    assert unnamed.status_code == 201, unnamed.text
    events = unnamed.json()["recorded"]
    assert {(event["coder"], event["coder_id"]) for event in events} == {
        ("coder-client", "coder-client")
    }
    decisions = unnamed.json()["review"]["decisions"]
    assert {decision["coder"] for decision in decisions} == {"coder-client"}

    with service.engine.connect() as connection:
        stored = connection.execute(
            sa.text("SELECT client, coder_id FROM feedback_events ORDER BY id")
        ).all()
    assert tuple(stored[0]) == ("coder-client", "Dr Ana Ruiz")
    assert {tuple(row) for row in stored[1:]} == {("coder-client", "coder-client")}


# -- HTTP edges ---------------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/healthz", "/readyz"])
def test_head_on_health_routes(sqlite_service: Service, path: str) -> None:
    response = sqlite_service.http.head(path)
    assert response.status_code == 200
    assert response.content == b""


def test_security_headers(sqlite_service: Service) -> None:
    created = sqlite_service.http.post(
        "/v1/predictions", json={"text": NOTE}, headers=headers("ehr")
    )
    detail = sqlite_service.http.get(created.headers["location"], headers=headers("coder"))
    export = sqlite_service.http.get("/v1/feedback/export", headers=headers("admin"))
    refused = sqlite_service.http.get("/v1/predictions")
    for response in (created, detail, export, refused):
        assert response.headers["cache-control"] == "no-store"
        assert response.headers["x-content-type-options"] == "nosniff"
    health = sqlite_service.http.get("/healthz")
    assert health.headers["x-content-type-options"] == "nosniff"


@pytest.mark.parametrize(
    "origin", ["null", "http://*", "https://*.example.org", "*.example.org", "https://a.org/path"]
)
def test_cors_origins_must_be_origins(
    make_settings: Callable[..., Settings], sqlite_url: str, origin: str
) -> None:
    for environment in ("development", "production"):
        with pytest.raises(ValidationError, match="origin"):
            make_settings(sqlite_url, environment=environment, cors_origins=[origin])


def test_production_cors_origins_are_https(
    make_settings: Callable[..., Settings], sqlite_url: str
) -> None:
    with pytest.raises(ValidationError, match="only https origins"):
        make_settings(sqlite_url, environment="production", cors_origins=["http://ward.example"])
    allowed = [
        "https://coding.example.org",
        "https://coding.example.org:8443",
        "http://localhost:5173",
    ]
    settings = make_settings(sqlite_url, environment="production", cors_origins=allowed)
    assert settings.cors_origins == allowed
    # Development keeps plain http for local front ends.
    assert make_settings(sqlite_url, cors_origins=["http://ward.example"]).cors_origins


def _post_without_reading(service: Service, request_headers: list[tuple[bytes, bytes]]) -> Any:
    """POST /v1/predictions straight into the ASGI app; returns (status, body chunks asked for)."""
    asked: list[str] = []
    sent: list[dict[str, Any]] = []
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/predictions",
        "raw_path": b"/v1/predictions",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", b"19000000"),
            *request_headers,
        ],
        "client": ("127.0.0.1", 50000),
        "server": ("testserver", 80),
        "state": {},
    }

    async def receive() -> dict[str, Any]:
        asked.append("body")
        return {"type": "http.request", "body": b'{"text": "' + b"x" * 1000, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(service.app(scope, receive, send))
    return sent[0]["status"], asked


def test_the_key_is_checked_before_the_body_is_read(sqlite_service: Service) -> None:
    status, asked = _post_without_reading(sqlite_service, [])
    assert (status, asked) == (401, [])
    status, asked = _post_without_reading(sqlite_service, [(b"x-api-key", b"wrong")])
    assert (status, asked) == (401, [])


@pytest.fixture
def strict_throttle(make_settings: Callable[..., Settings], sqlite_url: str) -> Iterator[Service]:
    with running_service(make_settings(sqlite_url, auth_failures_per_minute=3)) as service:
        yield service


def test_unknown_keys_are_throttled_per_address(strict_throttle: Service) -> None:
    def call(key: str) -> Any:
        return strict_throttle.http.get("/v1/me", headers={"X-API-Key": key})

    assert [call(f"guess-{n}").status_code for n in range(3)] == [401] * 3
    throttled = call("guess-4")
    assert throttled.status_code == 429
    assert 1 <= int(throttled.headers["retry-after"]) <= 60
    assert "too many unknown API keys" in throttled.json()["detail"]
    # While throttled no key is checked at all, so guessing gains nothing.
    assert strict_throttle.http.get("/v1/me", headers=headers("coder")).status_code == 429
    # A request without a key guesses nothing and is simply refused.
    assert strict_throttle.http.get("/v1/me").status_code == 401


def test_the_throttle_forgets_after_its_window() -> None:
    throttle = FailedKeyThrottle(per_minute=2, window=60.0)
    throttle.record("10.0.0.1", now=0.0)
    throttle.record("10.0.0.1", now=10.0)
    assert throttle.retry_after("10.0.0.1", now=11.0) == 49
    assert throttle.retry_after("10.0.0.2", now=11.0) is None  # per address
    assert throttle.retry_after("10.0.0.1", now=60.5) is None  # the first failure expired


def test_unknown_keys_on_fhir_routes_count_too(strict_throttle: Service) -> None:
    """FHIR routes check keys in their dependency; the same throttle applies there."""

    def call(key: str) -> Any:
        return strict_throttle.http.get("/fhir/r4/Condition", headers={"X-API-Key": key})

    assert [call(f"guess-{n}").status_code for n in range(3)] == [401] * 3
    throttled = call("guess-4")
    assert throttled.status_code == 429
    assert int(throttled.headers["retry-after"]) >= 1
    assert strict_throttle.http.get("/v1/me", headers=headers("coder")).status_code == 429
