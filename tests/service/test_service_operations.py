"""Operations: readiness only after a real warm-up, Prometheus metrics, JSON logs without note
text, and the retention purge that removes note text but keeps the audit trail."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from model.runtime import OnnxPredictor
from service.cli import app as cli
from service.core.config import Settings, unknown_variables
from service.db.admin import purge_note_text
from tests.service.service_testing import Service, headers, running_service, wait_ready

SECRET_NOTE = "Paciente Zacarias Quintanilla with fever and cough."


class GatedPredictor(OnnxPredictor):
    """Warm-up waits until the test opens the gate."""

    def __init__(self, bundle_dir: Path, gate: threading.Event) -> None:
        super().__init__(bundle_dir)
        self.gate = gate

    def warm_up(self) -> None:
        if not self.gate.wait(timeout=30):
            raise TimeoutError("the test never opened the gate")
        super().warm_up()


def test_not_ready_until_warm_up_has_run(
    make_settings: Callable[..., Settings], sqlite_url: str
) -> None:
    gate = threading.Event()
    settings = make_settings(sqlite_url, retry_after_seconds=3)
    factory = lambda s: GatedPredictor(s.bundle_dir, gate)  # noqa: E731
    with running_service(settings, predictor_factory=factory, ready=False) as service:
        assert service.http.get("/healthz").status_code == 200  # alive while warming up
        ready = service.http.get("/readyz")
        assert ready.status_code == 503
        assert ready.json() == {"ready": False, "model": "warming up", "database": "ok"}
        assert ready.headers["retry-after"] == "3"
        early = service.http.post("/v1/predictions", json={"text": "x"}, headers=headers("ehr"))
        assert early.status_code == 503
        assert "not ready (warming up)" in early.json()["detail"]
        assert service.count("predictions") == 0

        gate.set()
        wait_ready(service.http)
        assert service.http.get("/readyz").json()["model"] == "ready"
        assert service.predict("Fever.")["codes"]


def test_failed_warm_up_keeps_the_service_unready(
    make_settings: Callable[..., Settings], sqlite_url: str
) -> None:
    class Broken(OnnxPredictor):
        def warm_up(self) -> None:
            raise RuntimeError("graph gave NaN")

    factory = lambda s: Broken(s.bundle_dir)  # noqa: E731
    with running_service(make_settings(sqlite_url), predictor_factory=factory, ready=False) as svc:
        for _ in range(500):
            state = svc.http.get("/readyz").json()["model"]
            if state != "warming up":
                break
            threading.Event().wait(0.01)
        assert state == "failed: RuntimeError: graph gave NaN"
        assert svc.http.get("/readyz").status_code == 503


def test_a_broken_bundle_stops_start_up(
    make_settings: Callable[..., Settings], sqlite_url: str, tmp_path: Path
) -> None:
    from model.bundle import BundleError

    with (
        pytest.raises(BundleError, match="does not exist"),
        running_service(make_settings(sqlite_url, bundle_dir=tmp_path / "no-bundle")),
    ):
        pass


def test_metrics(sqlite_service: Service) -> None:
    service = sqlite_service
    service.http.get("/healthz")
    service.http.get("/readyz")
    first = service.predict("Fever and cough.", top_k=3)
    service.http.post(
        "/v1/predictions/batch",
        json={"notes": [{"text": "Fever."}, {"text": "Cough."}, {"text": "Diabetes."}]},
        headers=headers("ehr"),
    )
    service.http.post("/v1/predictions", json={"text": " "}, headers=headers("ehr"))
    # Progress saved, not final: the other suggestions above threshold stay undecided.
    saved = service.feedback(
        first["prediction_id"], ("R50.9", "accepted"), ("E11.9", "added"), final=False
    )
    assert saved.status_code == 201, saved.text

    text = service.http.get("/metrics").text
    assert 'plant_icd_model_info{name="tiny-plant",version="0.0.1-test"} 1.0' in text
    metric = service.metric
    route = "plant_icd_http_request_duration_seconds_count"
    assert metric(route, route="/v1/predictions", method="POST", status="201") == 1
    assert metric(route, route="/v1/predictions", method="POST", status="422") == 1
    assert metric(route, route="/v1/predictions/batch", method="POST", status="201") == 1
    assert metric(route, route="/v1/predictions/{prediction_id}/feedback", status="201") == 1
    # Probes and scrapes are not counted.
    for probe in ("/healthz", "/readyz", "/metrics"):
        assert f'route="{probe}"' not in text
    assert metric("plant_icd_inference_duration_seconds_count") == 2  # one per call
    assert metric("plant_icd_batch_size_notes_sum") == 4
    assert metric("plant_icd_batch_size_notes_count") == 2
    assert metric("plant_icd_codes_per_note_count") == 4
    assert metric("plant_icd_predictions_recorded_total") == 4
    assert metric("plant_icd_feedback_decisions_total", decision="accepted") == 1
    assert metric("plant_icd_feedback_decisions_total", decision="added") == 1
    assert metric("plant_icd_feedback_decisions_total", decision="rejected") == 0
    assert metric("plant_icd_db_write_errors_total", operation="prediction") == 0


def test_metrics_can_be_turned_off(make_settings: Callable[..., Settings], sqlite_url: str) -> None:
    with running_service(make_settings(sqlite_url, metrics_enabled=False)) as service:
        assert service.http.get("/metrics").status_code == 404


def test_logs_are_json_with_request_ids_and_no_note_text(
    make_settings: Callable[..., Settings], sqlite_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with running_service(make_settings(sqlite_url, log_level="INFO")) as service:
        capsys.readouterr()
        created = service.http.post(
            "/v1/predictions",
            json={"text": SECRET_NOTE, "note_id": "n-1"},
            headers={**headers("ehr"), "X-Request-ID": "req-42"},
        )
        assert created.status_code == 201
        service.http.post(
            "/v1/predictions", json={"text": SECRET_NOTE * 3000}, headers=headers("ehr")
        )
        service.http.post(
            "/v1/predictions", json={"text": SECRET_NOTE, "bad": 1}, headers=headers("ehr")
        )
    logged = capsys.readouterr().err
    records = [json.loads(line) for line in logged.splitlines() if line.startswith("{")]
    access = [r for r in records if r["message"] == "request"]
    assert access[0]["request_id"] == "req-42"
    assert (access[0]["route"], access[0]["status"], access[0]["client"]) == (
        "/v1/predictions",
        201,
        "ehr-client",
    )
    assert [r["status"] for r in access] == [201, 413, 422]
    assert "Quintanilla" not in logged


def test_retention_purge_removes_old_text_and_keeps_the_audit(service: Service) -> None:
    old = service.predict(SECRET_NOTE, note_id="old", top_k=2)
    recent = service.predict("Recent fever.", note_id="recent")
    assert service.feedback(old["prediction_id"], ("R50.9", "accepted")).status_code == 201
    with service.engine.begin() as connection:
        connection.execute(
            sa.text("UPDATE predictions SET created_at = :then WHERE id = :id"),
            {"then": datetime.now(UTC) - timedelta(days=40), "id": old["prediction_id"]},
        )

    assert purge_note_text(service.engine, older_than=timedelta(days=30)) == 1
    assert purge_note_text(service.engine, older_than=timedelta(days=30)) == 0  # idempotent

    purged = service.http.get(
        f"/v1/predictions/{old['prediction_id']}", headers=headers("coder")
    ).json()
    kept = service.http.get(
        f"/v1/predictions/{recent['prediction_id']}", headers=headers("coder")
    ).json()
    assert purged["note_text"] is None
    assert len(purged["note_sha256"]) == 64
    assert [c["code"] for c in purged["codes"]] == [c["code"] for c in old["codes"]]
    assert all(h["text"] is None for c in purged["codes"] for h in c["highlights"])
    assert purged["review"]["final_codes"] == ["R50.9"]
    assert service.count("feedback_events") == 1
    assert kept["note_text"] == "Recent fever."

    export = service.http.get("/v1/feedback/export", headers=headers("admin"))
    assert export.text == ""
    assert export.headers["x-export-skipped-without-text"] == "1"

    # The command does the same through the settings' database.
    result = CliRunner().invoke(
        cli,
        ["db", "purge", "--older-than-days", "0", "--database-url", service.settings.database_url],
    )
    assert result.exit_code == 0, result.output
    assert "1" in result.output.split("notes purged")[-1]
    with service.engine.connect() as connection:
        texts = connection.execute(sa.text("SELECT note_text FROM predictions")).scalars().all()
    assert texts == [None, None]


def test_an_unknown_plant_icd_variable_is_logged_with_the_closest_setting(
    make_settings: Callable[..., Settings],
    sqlite_url: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PLANT_ICD_MAX_NOTE_CHAR", "500")  # the setting is MAX_NOTE_CHARS
    monkeypatch.setenv("PLANT_ICD_INFERENCE_THREADS", "1")  # a setting: no warning
    with running_service(make_settings(sqlite_url, log_level="INFO")):
        pass
    records = [json.loads(line) for line in capsys.readouterr().err.splitlines() if "{" in line]
    warned = [r["message"] for r in records if r["level"] == "WARNING"]
    assert (
        "PLANT_ICD_MAX_NOTE_CHAR is set but plant-icd reads no such variable; did you mean "
        "PLANT_ICD_MAX_NOTE_CHARS?"
    ) in warned
    assert not [message for message in warned if "INFERENCE_THREADS" in message]


def test_unknown_variables_name_the_closest_known_one() -> None:
    environ = {
        "PLANT_ICD_DATABSE_URL": "sqlite://",
        "PLANT_ICD_DATABASE_URL": "sqlite://",  # a setting
        "PLANT_ICD_API_KEYS_FILE": "/run/keys.json",  # a setting's secret-file form
        "PLANT_ICD_CODIESP": "/data/codiesp",  # read by the commands, not a setting
        "PLANT_ICD_ZZZZZZZZZZZZZZZZZZZZ": "1",  # like nothing
        "HOME": "/root",
    }
    assert unknown_variables(environ) == [
        "PLANT_ICD_DATABSE_URL is set but plant-icd reads no such variable; did you mean "
        "PLANT_ICD_DATABASE_URL?",
        "PLANT_ICD_ZZZZZZZZZZZZZZZZZZZZ is set but plant-icd reads no such variable",
    ]
