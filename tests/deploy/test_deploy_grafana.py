"""The Grafana dashboard: it names only metrics the service exports, shows each of them, has the
panels operators asked for, and uses the provisioned data source."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.deploy.deploy_testing import (
    GRAFANA,
    PROMETHEUS_BUILTINS,
    exported_series_names,
    load_yaml,
    referenced_series,
)

DASHBOARD = GRAFANA / "dashboards" / "plant-icd.json"


@pytest.fixture(scope="module")
def dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return loaded


def expressions(dashboard: dict[str, Any]) -> list[str]:
    return [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]


def test_dashboard_names_only_exported_metrics(dashboard: dict[str, Any]):
    exported = exported_series_names()
    named = set().union(*(referenced_series(expr) for expr in expressions(dashboard)))
    assert named <= set(exported), sorted(named - set(exported))
    # ... and shows every metric family the service exports.
    assert {exported[name] for name in named} == set(exported.values())
    # Anything else it queries is a series Prometheus makes itself.
    identifiers = set().union(
        *(re.findall(r"\b([a-z_]+)\{", expr) for expr in expressions(dashboard))
    )
    assert identifiers - set(exported) <= PROMETHEUS_BUILTINS


def test_dashboard_has_the_panels_operators_need(dashboard: dict[str, Any]):
    titles = {panel["title"] for panel in dashboard["panels"]}
    for wanted in (
        "Request rate by route",
        "Latency p50 / p95: POST /v1/predictions",
        "Inference time p50 / p95",
        "Codes per note",
        "Feedback acceptance rate (24h)",
        "Database write errors",
        "Readiness by instance",
    ):
        assert wanted in titles, wanted
    by_title = {panel["title"]: panel for panel in dashboard["panels"]}
    latency = [
        t["legendFormat"] for t in by_title["Latency p50 / p95: POST /v1/predictions"]["targets"]
    ]
    assert latency == ["p50", "p95"]
    acceptance = by_title["Feedback acceptance rate (24h)"]["targets"][0]["expr"]
    assert 'decision="accepted"' in acceptance and 'decision=~"accepted|rejected"' in acceptance


def test_panels_use_the_provisioned_data_source(dashboard: dict[str, Any]):
    source = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")
    (datasource,) = source["datasources"]
    expected = {"type": datasource["type"], "uid": datasource["uid"]}
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == expected, panel["title"]
        for target in panel["targets"]:
            assert target["datasource"] == expected
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(set(ids)) == len(ids)
    assert dashboard["uid"] == "plant-icd-service"


def test_every_query_selects_the_scrape_job(dashboard: dict[str, Any]):
    # The alerts select job="plant-icd" too: one name to keep when scraping elsewhere.
    for expr in expressions(dashboard):
        selectors = re.findall(r"\b(?:plant_icd_\w+|up)\{([^}]*)\}", expr)
        assert selectors and all('job="plant-icd"' in selector for selector in selectors), expr
