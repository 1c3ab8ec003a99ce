"""The database disappears mid-run: predictions get 503 with Retry-After (never codes that were
not recorded), the write-error metric counts them, and the service recovers when it returns."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import sqlalchemy as sa

from service.core.config import Settings
from tests.service.service_testing import TcpProxy, headers, running_service

pytestmark = pytest.mark.postgres


def test_database_outage_gives_503_and_no_unrecorded_prediction(
    make_settings: Callable[..., Settings], proxied_postgres: tuple[str, str, TcpProxy]
) -> None:
    direct_url, proxied_url, proxy = proxied_postgres
    settings = make_settings(proxied_url, db_connect_timeout_seconds=2, retry_after_seconds=7)
    answered: list[str] = []

    with running_service(settings) as service:

        def predict() -> int:
            response = service.http.post(
                "/v1/predictions", json={"text": "Fever and cough."}, headers=headers("ehr")
            )
            if response.status_code == 201:
                answered.append(response.json()["prediction_id"])
            else:
                assert response.status_code == 503, response.text
                assert response.headers["retry-after"] == "7"
                assert "codes" not in response.json()
                assert "database is unavailable" in response.json()["detail"]
            return response.status_code

        assert [predict() for _ in range(3)] == [201] * 3

        proxy.stop()  # the database disappears, open connections included
        assert [predict() for _ in range(3)] == [503] * 3
        assert service.metric("plant_icd_db_write_errors_total", operation="prediction") == 3
        ready = service.http.get("/readyz")
        assert ready.status_code == 503
        assert ready.json()["database"].startswith("unavailable")
        feedback = service.http.get("/v1/predictions", headers=headers("coder"))
        assert feedback.status_code == 503  # reads fail the same way, not with a 500

        proxy.start()  # it comes back on the same address
        assert predict() == 201
        assert service.http.get("/readyz").status_code == 200

    engine = sa.create_engine(direct_url)
    try:
        with engine.connect() as connection:
            stored = set(connection.execute(sa.text("SELECT id FROM predictions")).scalars())
    finally:
        engine.dispose()
    # Every prediction a client received is in the audit log, and only those.
    assert len(answered) == 4
    assert stored == set(answered)
