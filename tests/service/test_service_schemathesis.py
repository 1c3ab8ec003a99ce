"""Requests generated from the published OpenAPI schema (schemathesis) against a real uvicorn:
whatever is sent, no server error; for valid requests, answers match the schema's status codes
and bodies. Hypothesis is driven directly (schemathesis' pytest plugin predates pytest 9)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from service.core.config import Settings
from service.db import admin
from service.main import create_app
from tests.service.service_testing import API_KEYS, KEYS, uvicorn_server

schemathesis = pytest.importorskip(
    "schemathesis", reason="schemathesis is a dev dependency: pip install schemathesis"
)
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

OPERATIONS = [
    ("POST", "/v1/predictions"),
    ("POST", "/v1/predictions/batch"),
    ("GET", "/v1/predictions"),
    ("GET", "/v1/predictions/{prediction_id}"),
    ("POST", "/v1/predictions/{prediction_id}/feedback"),
    ("GET", "/v1/feedback/export"),
    ("GET", "/v1/codes/{code}"),
    ("GET", "/v1/codes"),
    ("GET", "/v1/model"),
    ("GET", "/healthz"),
    ("GET", "/readyz"),
    ("POST", "/fhir/r4/DocumentReference/$code"),
    ("GET", "/fhir/r4/Condition"),
    ("GET", "/fhir/r4/Condition/{resource_id}"),
    ("GET", "/fhir/r4/Procedure"),
    ("GET", "/fhir/r4/Procedure/{resource_id}"),
    ("GET", "/fhir/r4/metadata"),
]
# Routes that take no input: nothing for a negative case to break.
WITHOUT_INPUT = ("/healthz", "/readyz", "/fhir/r4/metadata")
EXAMPLES_PER_MODE = 15


@pytest.fixture(scope="module")
def api_schema(bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    url = f"sqlite:///{tmp_path_factory.mktemp('schemathesis') / 'audit.db'}"
    admin.upgrade(url)
    app = create_app(
        Settings(bundle_dir=bundle_dir, database_url=url, api_keys=API_KEYS, log_level="ERROR")
    )
    with uvicorn_server(app) as base_url:
        for _ in range(3000):
            if httpx.get(f"{base_url}/readyz").status_code == 200:
                break
            time.sleep(0.01)
        yield schemathesis.openapi.from_url(f"{base_url}/openapi.json")


# Negative cases need an input to break; the probes take none.
CASES = [(GenerationMode.POSITIVE, *operation) for operation in OPERATIONS] + [
    (GenerationMode.NEGATIVE, *operation)
    for operation in OPERATIONS
    if operation[1] not in WITHOUT_INPUT
]


@pytest.mark.parametrize(("mode", "method", "path"), CASES)
def test_generated_requests(api_schema: Any, method: str, path: str, mode: Any) -> None:
    operation = api_schema[path][method]
    checks = [not_a_server_error]
    if mode is GenerationMode.POSITIVE:
        checks += [status_code_conformance, response_schema_conformance]

    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_MODE,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    def run(case: Any) -> None:
        case.call_and_validate(headers={"X-API-Key": KEYS["admin"]}, checks=checks)

    run()
