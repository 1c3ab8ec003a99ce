"""API keys and roles, settings that refuse insecure production set-ups, and CORS."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from service.core.config import Settings
from service.core.security import KeyRing, hash_key
from tests.service.service_testing import API_KEYS, KEYS, Service, headers, running_service

PID = "00000000-0000-4000-8000-000000000000"
NOTE = {"text": "Fever and cough."}
FEEDBACK = {"coder_id": "c", "decisions": [{"code": "R05", "decision": "accepted"}]}

# (method, path, body, roles allowed besides admin)
ROUTES: list[tuple[str, str, dict[str, Any] | None, set[str]]] = [
    ("POST", "/v1/predictions", NOTE, {"ehr"}),
    ("POST", "/v1/predictions/batch", {"notes": [NOTE]}, {"ehr"}),
    ("GET", "/v1/predictions", None, {"coder"}),
    ("GET", f"/v1/predictions/{PID}", None, {"coder"}),
    ("POST", f"/v1/predictions/{PID}/feedback", FEEDBACK, {"coder"}),
    ("GET", "/v1/feedback/export", None, set()),
    ("GET", "/v1/model", None, set()),
    ("GET", "/v1/codes/R05", None, {"ehr", "coder"}),
    ("GET", "/v1/codes?q=fever", None, {"ehr", "coder"}),
]


def _call(service: Service, method: str, path: str, body: Any, request_headers: Any) -> Any:
    return service.http.request(method, path, json=body, headers=request_headers)


@pytest.mark.parametrize(("method", "path", "body", "allowed"), ROUTES)
def test_roles(
    sqlite_service: Service, method: str, path: str, body: Any, allowed: set[str]
) -> None:
    missing = _call(sqlite_service, method, path, body, {})
    assert missing.status_code == 401
    assert "X-API-Key" in missing.json()["detail"]
    assert missing.headers["www-authenticate"] == "Bearer"
    unknown = _call(sqlite_service, method, path, body, {"X-API-Key": "not-a-key"})
    assert unknown.status_code == 401
    assert "unknown API key" in unknown.json()["detail"]
    for role in ("ehr", "coder", "admin"):
        response = _call(sqlite_service, method, path, body, headers(role))
        if role == "admin" or role in allowed:
            assert response.status_code not in (401, 403), (role, response.text)
        else:
            assert response.status_code == 403, (role, response.text)
            assert f"role {role!r}" in response.json()["detail"]


def test_bearer_token_is_accepted(sqlite_service: Service) -> None:
    response = sqlite_service.http.post(
        "/v1/predictions", json=NOTE, headers={"Authorization": f"Bearer {KEYS['ehr']}"}
    )
    assert response.status_code == 201, response.text
    assert response.json()["prediction_id"]


def test_health_routes_need_no_key(sqlite_service: Service) -> None:
    assert sqlite_service.http.get("/healthz").json() == {"status": "ok"}
    assert sqlite_service.http.get("/readyz").status_code == 200
    assert sqlite_service.http.get("/metrics").status_code == 200


def test_predictions_record_the_calling_client(sqlite_service: Service) -> None:
    created = sqlite_service.predict("Fever.", role="admin")
    detail = sqlite_service.http.get(
        f"/v1/predictions/{created['prediction_id']}", headers=headers("coder")
    )
    assert detail.json()["client"] == "admin-client"


def test_keyring_matches_by_hash_only() -> None:
    ring = KeyRing(API_KEYS)
    found = ring.authenticate(KEYS["coder"])
    assert found is not None and (found.name, found.role) == ("coder-client", "coder")
    assert ring.authenticate(hash_key(KEYS["coder"])) is None  # the hash is not a key
    assert ring.authenticate("") is None


def test_development_without_keys_is_open_but_production_refuses(
    make_settings: Callable[..., Settings], sqlite_url: str
) -> None:
    with running_service(make_settings(sqlite_url, api_keys=[])) as service:
        response = service.http.post("/v1/predictions", json=NOTE)
        assert response.status_code == 201
        detail = service.http.get(f"/v1/predictions/{response.json()['prediction_id']}")
        assert detail.json()["client"] == "development"
    with pytest.raises(ValidationError, match="no API keys are configured"):
        make_settings(sqlite_url, api_keys=[], environment="production")
    with pytest.raises(ValidationError, match="contains '\\*'"):
        make_settings(sqlite_url, environment="production", cors_origins=["*"])
    assert make_settings(sqlite_url, environment="production").auth_enabled


def test_keys_come_from_a_file(
    make_settings: Callable[..., Settings], sqlite_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "keys.json"
    path.write_text(json.dumps([{"name": "ward-7", "role": "coder", "sha256": hash_key("k7")}]))
    settings = make_settings(sqlite_url, api_keys=[], api_keys_file=path)
    assert [(key.name, key.role) for key in settings.api_keys] == [("ward-7", "coder")]

    path.write_text(json.dumps([{"name": "ward-7", "role": "nurse", "sha256": hash_key("k")}]))
    with pytest.raises(ValidationError, match="entry 0 is invalid"):
        make_settings(sqlite_url, api_keys=[], api_keys_file=path)
    with pytest.raises(ValidationError, match="does not exist"):
        make_settings(sqlite_url, api_keys_file=tmp_path / "absent.json")
    path.write_text(json.dumps([{"name": "ehr-client", "role": "ehr", "sha256": hash_key("x")}]))
    with pytest.raises(ValidationError, match="unique"):
        make_settings(sqlite_url, api_keys_file=path)  # clashes with API_KEYS' ehr-client


def test_settings_read_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PLANT_ICD_DATABASE_URL", "postgresql://u:p%40ss@db:5432/audit")
    monkeypatch.setenv("PLANT_ICD_MAX_NOTE_CHARS", "500")
    monkeypatch.setenv("PLANT_ICD_STORE_NOTE_TEXT", "false")
    monkeypatch.setenv("PLANT_ICD_CORS_ORIGINS", '["https://coding.example.org"]')
    settings = Settings()
    assert settings.database_url == "postgresql+psycopg://u:p%40ss@db:5432/audit"
    assert "p%40ss" not in settings.redacted_database_url
    assert (settings.max_note_chars, settings.store_note_text) == (500, False)
    assert settings.cors_origins == ["https://coding.example.org"]


def test_cors_is_closed_by_default_and_opens_per_origin(
    make_settings: Callable[..., Settings], sqlite_url: str
) -> None:
    preflight = {
        "Origin": "https://coding.example.org",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "X-API-Key",
    }
    with running_service(make_settings(sqlite_url)) as service:
        closed = service.http.options("/v1/predictions", headers=preflight)
        assert "access-control-allow-origin" not in closed.headers
        plain = service.http.get("/healthz", headers={"Origin": "https://coding.example.org"})
        assert "access-control-allow-origin" not in plain.headers
    with running_service(
        make_settings(sqlite_url, cors_origins=["https://coding.example.org"])
    ) as service:
        opened = service.http.options("/v1/predictions", headers=preflight)
        assert opened.status_code == 200
        assert opened.headers["access-control-allow-origin"] == "https://coding.example.org"
        other = service.http.options(
            "/v1/predictions", headers={**preflight, "Origin": "https://evil.example"}
        )
        assert "access-control-allow-origin" not in other.headers
