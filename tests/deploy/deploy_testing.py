"""Helpers shared by the deployment tests: repository paths, YAML loading, the metric names the
service exports, metric names a text refers to, tools that may be absent, and a free port."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
K8S = DEPLOY / "k8s"
PROMETHEUS = DEPLOY / "prometheus"
GRAFANA = DEPLOY / "grafana"
SCRIPTS = REPO / "scripts"
VENV_BIN = Path(sys.executable).parent

# Series Prometheus makes itself for every target; everything else must come from the service.
PROMETHEUS_BUILTINS = frozenset({"up", "scrape_duration_seconds", "scrape_samples_scraped"})

_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gauge": ("",),
}


def load_yaml(path: Path) -> Any:
    yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read the deployment files")
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_yaml_documents(path: Path) -> list[Any]:
    yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read the deployment files")
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def exported_series_names() -> dict[str, str]:
    """Every series name the service's /metrics can carry, mapped to its metric family."""
    from service.core.metrics import Metrics

    names: dict[str, str] = {}
    for family in Metrics().registry.collect():
        for suffix in _SUFFIXES[family.type]:
            names[family.name + suffix] = family.name
    return names


def referenced_series(text: str) -> set[str]:
    """The plant_icd_* series names a PromQL text (a dashboard, a rule file) refers to."""
    return set(re.findall(r"\bplant_icd_[a-z0-9_]*[a-z0-9]", text))


def tool(name: str) -> str:
    """The path of a command-line tool (the venv's first), or skip the test saying how to get it."""
    found = shutil.which(name, path=f"{VENV_BIN}:{os.environ.get('PATH', '')}")
    if found is None:
        pytest.skip(f"{name} is not installed: run scripts/install-test-prereqs.sh")
    return found


def run(
    command: list[str],
    *,
    timeout: float = 60,
    cwd: Path = REPO,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])
