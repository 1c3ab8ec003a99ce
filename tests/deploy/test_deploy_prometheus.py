"""Prometheus: promtool checks the config and the alert rules and runs their unit tests, and a real
Prometheus server scrapes a running service: the plant_icd_* series arrive, the alert rules
evaluate cleanly, and every dashboard query runs."""

from __future__ import annotations

import json
import re
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from service.core.config import Settings
from service.db import admin
from service.main import create_app
from tests.deploy.deploy_testing import (
    GRAFANA,
    PROMETHEUS,
    PROMETHEUS_BUILTINS,
    exported_series_names,
    free_port,
    load_yaml,
    referenced_series,
    run,
    tool,
)
from tests.service.service_testing import API_KEYS, KEYS, uvicorn_server

ALERTS = PROMETHEUS / "alerts.yml"
DASHBOARD = GRAFANA / "dashboards" / "plant-icd.json"
EXPECTED_ALERTS = {
    "PlantIcdHighLatencyP95",
    "PlantIcdHigh5xxRate",
    "PlantIcdNotReady",
    "PlantIcdDatabaseWriteErrors",
}


def test_alert_rules_cover_the_issue_and_name_real_metrics():
    rules = load_yaml(ALERTS)["groups"][0]["rules"]
    assert {rule["alert"] for rule in rules} == EXPECTED_ALERTS
    for rule in rules:
        assert rule["labels"]["severity"] in ("warning", "critical")
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        named = referenced_series(rule["expr"])
        assert named <= set(exported_series_names()), named
    # The annotations may name a metric family (a histogram by its base name) in prose.
    series_to_family = exported_series_names()
    known = set(series_to_family) | set(series_to_family.values())
    assert referenced_series(ALERTS.read_text(encoding="utf-8")) <= known


def test_promtool_checks_config_and_rules():
    promtool = tool("promtool")
    config = run([promtool, "check", "config", str(PROMETHEUS / "prometheus.yml")])
    assert config.returncode == 0, config.stdout + config.stderr
    rules = run([promtool, "check", "rules", str(ALERTS)])
    assert rules.returncode == 0, rules.stdout + rules.stderr
    assert f"SUCCESS: {len(EXPECTED_ALERTS)} rules found" in rules.stdout


def test_promtool_unit_tests_of_the_alerts():
    promtool = tool("promtool")
    result = run([promtool, "test", "rules", "alerts.test.yml"], cwd=PROMETHEUS)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


# -- a real Prometheus scraping a running service -------------------------------------------------


def query(base: str, promql: str) -> dict[str, Any]:
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    with urllib.request.urlopen(url, timeout=10) as response:
        answer: dict[str, Any] = json.load(response)
    return answer


def get_json(url: str) -> dict[str, Any]:
    with urllib.request.urlopen(url, timeout=10) as response:
        answer: dict[str, Any] = json.load(response)
    return answer


def wait_for(condition: Any, what: str, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = condition()
        except OSError as error:  # the server is not up yet
            last = error
        else:
            if last:
                return last
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}; last answer: {last!r}")


def post(base: str, path: str, body: dict[str, Any], key: str) -> dict[str, Any]:
    request = urllib.request.Request(
        f"{base}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "X-API-Key": key},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        assert response.status == 201
        answer: dict[str, Any] = json.load(response)
    return answer


@pytest.fixture
def running_api(tiny_bundle: Path, tmp_path: Path) -> Iterator[str]:
    url = f"sqlite:///{tmp_path / 'audit.db'}"
    admin.upgrade(url)
    settings = Settings(
        bundle_dir=tiny_bundle, database_url=url, api_keys=API_KEYS, log_level="WARNING"
    )
    with uvicorn_server(create_app(settings)) as base:
        wait_for(lambda: get_json(f"{base}/readyz")["ready"], "the service to be ready")
        yield base


@pytest.fixture
def prometheus(running_api: str, tmp_path: Path) -> Iterator[str]:
    binary = tool("prometheus")
    port = free_port()
    api = urllib.parse.urlsplit(running_api).netloc
    config = load_yaml(PROMETHEUS / "prometheus.yml")
    # The shipped config, pointed at this test's service and sped up to one scrape a second.
    config["global"].update(scrape_interval="1s", evaluation_interval="1s")
    config["rule_files"] = [str(PROMETHEUS / "alerts.yml")]
    for job in config["scrape_configs"]:
        job["static_configs"][0]["targets"] = [
            api if job["job_name"] == "plant-icd" else f"127.0.0.1:{port}"
        ]
    config_path = tmp_path / "prometheus.yml"
    config_path.write_text(json.dumps(config), encoding="utf-8")  # JSON is YAML
    log = (tmp_path / "prometheus.log").open("w")
    server = subprocess.Popen(
        [
            binary,
            f"--config.file={config_path}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--log.level=warn",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for(
            lambda: (
                server.poll() is None
                and urllib.request.urlopen(f"{base}/-/ready", timeout=2).status == 200
            ),
            "Prometheus to start",
            timeout=30,
        )
        yield base
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=15)
        log.close()
        if server.returncode not in (0, -15):
            print((tmp_path / "prometheus.log").read_text(encoding="utf-8"))


def dashboard_queries() -> list[tuple[str, str]]:
    panels = json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"]
    return [
        (panel["title"], target["expr"]) for panel in panels for target in panel.get("targets", [])
    ]


@pytest.mark.timeout(120)
def test_prometheus_scrapes_the_service(running_api: str, prometheus: str):
    prediction = post(
        running_api, "/v1/predictions", {"text": "Fever and cough today."}, KEYS["ehr"]
    )
    codes = [entry["code"] for entry in prediction["codes"]]
    post(
        running_api,
        f"/v1/predictions/{prediction['prediction_id']}/feedback",
        {
            "coder_id": "coder-1",
            "decisions": [{"code": codes[0], "decision": "accepted"}],
            "undecided": "reject",  # a final review decides every code above threshold
        },
        KEYS["coder"],
    )

    def series(promql: str) -> list[dict[str, Any]]:
        answer = query(prometheus, promql)
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    # The target is up and the service's own series arrive with the values this test caused.
    (up,) = wait_for(lambda: series('up{job="plant-icd"} == 1'), "a successful scrape")
    assert up["metric"]["instance"] == urllib.parse.urlsplit(running_api).netloc
    (recorded,) = wait_for(
        lambda: series('plant_icd_predictions_recorded_total{job="plant-icd"} == 1'),
        "the prediction counter",
    )
    (model,) = series("plant_icd_model_info")
    assert (model["metric"]["name"], model["metric"]["version"]) == ("tiny-plant", "0.0.1-test")
    (accepted,) = series('plant_icd_feedback_decisions_total{decision="accepted"}')
    assert accepted["value"][1] == "1"
    (latency,) = series(
        'plant_icd_http_request_duration_seconds_count{route="/v1/predictions",status="201"}'
    )
    assert latency["value"][1] == "1"
    arrived = {
        entry["__name__"]
        for entry in series('{__name__=~"plant_icd_.+"}')
        for entry in [entry["metric"]]
    }
    families = set(exported_series_names().values())
    assert {exported_series_names()[name] for name in arrived} == families

    # The shipped alert rules load and evaluate against real series without errors.
    def evaluated_rules() -> list[dict[str, Any]]:
        groups = get_json(f"{prometheus}/api/v1/rules")["data"]["groups"]
        rules = [rule for group in groups for rule in group["rules"]]
        return (
            rules
            if all(rule.get("lastEvaluation", "").startswith("20") for rule in rules) and rules
            else []
        )

    rules = wait_for(evaluated_rules, "the alert rules to be evaluated")
    assert {rule["name"] for rule in rules} == EXPECTED_ALERTS
    assert all(rule["health"] == "ok" for rule in rules), rules
    assert {rule["name"] for rule in rules if rule["state"] != "inactive"} == set()

    # Every dashboard query is valid PromQL here; the request-rate panel sees the traffic.
    for title, expr in dashboard_queries():
        answer = query(prometheus, expr.replace("$__rate_interval", "1m"))
        assert answer["status"] == "success", (title, answer)
    request_rate = next(
        expr for title, expr in dashboard_queries() if title == "Request rate by route"
    )
    rates = wait_for(
        lambda: query(prometheus, request_rate.replace("$__rate_interval", "1m"))["data"]["result"],
        "a request rate",
    )
    assert {entry["metric"]["route"] for entry in rates} >= {"/v1/predictions"}
    assert recorded["value"][1] == "1"


def test_dashboard_queries_are_extracted():
    queries = dashboard_queries()
    assert len(queries) >= 10
    assert all(re.search(r"plant_icd_|\bup\{", expr) for _, expr in queries)
    # Outside plant_icd_* the dashboard reads only series Prometheus makes itself.
    others = {name for _, expr in queries for name in re.findall(r"\b([a-z_]+)\{", expr)}
    assert {name for name in others if not name.startswith("plant_icd_")} <= PROMETHEUS_BUILTINS
