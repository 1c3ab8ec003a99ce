"""A database that hangs (connections open, nothing answered) or whose schema changes under the
service: readiness says so within 2 s, requests answer 503 within the database timeout instead of
hanging, and a schema downgraded under a running service gives 503 naming the fix, never 500."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
import sqlalchemy as sa

from service.core.config import Settings
from service.db import admin
from tests.service.service_testing import TcpProxy, headers, running_service

NOTE = {"text": "Patient admitted with fever and a dry cough."}


@pytest.mark.postgres
def test_a_hung_database_is_detected(
    make_settings: Callable[..., Settings], proxied_postgres: tuple[str, str, TcpProxy]
) -> None:
    _, proxied_url, proxy = proxied_postgres
    settings = make_settings(
        proxied_url,
        db_connect_timeout_seconds=1,
        db_statement_timeout_seconds=1,
        db_pool_timeout_seconds=1,
        retry_after_seconds=3,
    )
    with running_service(settings) as service:
        assert service.http.get("/readyz").status_code == 200
        proxy.freeze()
        try:
            for _ in range(3):  # a stuck check is not waited for twice
                started = time.monotonic()
                ready = service.http.get("/readyz")
                assert time.monotonic() - started < 2.0
                assert ready.status_code == 503
                assert ready.json()["database"].startswith("unavailable")
            started = time.monotonic()
            hung = service.http.post("/v1/predictions", json=NOTE, headers=headers("ehr"))
            assert time.monotonic() - started < 4.0  # pool checkout + statement, then 503
            assert hung.status_code == 503, hung.text
            assert hung.headers["retry-after"] == "3"
            queue = service.http.get("/v1/predictions", headers=headers("coder"))
            assert queue.status_code == 503
        finally:
            proxy.thaw()
        deadline = time.monotonic() + 10
        while service.http.get("/readyz").status_code != 200:
            assert time.monotonic() < deadline, "readiness never came back after the thaw"
            time.sleep(0.1)
        assert service.http.post("/v1/predictions", json=NOTE, headers=headers("ehr")).is_success


def test_readiness_checks_the_schema_revision(
    make_settings: Callable[..., Settings], database_url: str
) -> None:
    with running_service(make_settings(database_url)) as service:
        assert service.http.get("/readyz").status_code == 200
        admin.downgrade(database_url, "0002", yes_delete_data=())
        ready = service.http.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["database"].startswith("schema at revision 0002")
        assert "plant-icd db upgrade" in ready.json()["database"]
        admin.upgrade(database_url)
        assert service.http.get("/readyz").status_code == 200
        # A newer release migrated the database (a rolling upgrade): this pod keeps serving.
        engine = sa.create_engine(database_url)
        try:
            with engine.begin() as connection:
                connection.execute(sa.text("UPDATE alembic_version SET version_num = '9999'"))
            assert service.http.get("/readyz").status_code == 200
        finally:
            engine.dispose()


def test_a_schema_dropped_under_the_service_is_503(
    make_settings: Callable[..., Settings], database_url: str
) -> None:
    with running_service(make_settings(database_url)) as service:
        service.predict(NOTE["text"])
        admin.downgrade(
            database_url, "base", yes_delete_data=admin.tables_dropped(database_url, "base")
        )
        for response in (
            service.http.post("/v1/predictions", json=NOTE, headers=headers("ehr")),
            service.http.get("/v1/predictions", headers=headers("coder")),
        ):
            assert response.status_code == 503, response.text
            assert "retry-after" in response.headers
        assert service.http.get("/readyz").status_code == 503
    engine = sa.create_engine(database_url)
    try:
        assert "predictions" not in sa.inspect(engine).get_table_names()
    finally:
        engine.dispose()
