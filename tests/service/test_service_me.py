"""GET /v1/me: the calling key's name, role and what the role may do, for every role; refused
without a key or with an unknown one; and the development caller when no keys are configured."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from service.core.config import Settings
from tests.service.service_testing import KEYS, Service, headers, running_service


@pytest.mark.parametrize(
    ("role", "may_predict", "may_review", "may_administer"),
    [("ehr", True, False, False), ("coder", False, True, False), ("admin", True, True, True)],
)
def test_me_names_the_key_and_what_its_role_may_do(
    sqlite_service: Service, role: str, may_predict: bool, may_review: bool, may_administer: bool
) -> None:
    response = sqlite_service.http.get("/v1/me", headers=headers(role))
    assert response.status_code == 200
    assert response.json() == {
        "name": f"{role}-client",
        "role": role,
        "may_predict": may_predict,
        "may_review": may_review,
        "may_administer": may_administer,
    }


def test_me_accepts_a_bearer_token(sqlite_service: Service) -> None:
    response = sqlite_service.http.get(
        "/v1/me", headers={"Authorization": f"Bearer {KEYS['coder']}"}
    )
    assert response.status_code == 200
    assert response.json()["name"] == "coder-client"


def test_me_refuses_a_missing_or_unknown_key(sqlite_service: Service) -> None:
    missing = sqlite_service.http.get("/v1/me")
    assert missing.status_code == 401
    assert "X-API-Key" in missing.json()["detail"]
    unknown = sqlite_service.http.get("/v1/me", headers={"X-API-Key": "picd_nope"})
    assert unknown.status_code == 401
    assert "unknown API key" in unknown.json()["detail"]


def test_me_without_configured_keys_is_the_development_admin(
    make_settings: Callable[..., Settings], sqlite_url: str
) -> None:
    with running_service(make_settings(sqlite_url, api_keys=[])) as service:
        response = service.http.get("/v1/me")
    assert response.status_code == 200
    assert response.json() == {
        "name": "development",
        "role": "admin",
        "may_predict": True,
        "may_review": True,
        "may_administer": True,
    }
