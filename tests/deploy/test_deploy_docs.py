"""docs/OPERATIONS.md stays true: its configuration reference is Settings' (generated, checked),
and it names every metric and alert the deployment ships."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from service.core.config import Settings
from tests.deploy.deploy_testing import (
    PROMETHEUS,
    REPO,
    SCRIPTS,
    exported_series_names,
    load_yaml,
    run,
)

OPERATIONS = REPO / "docs" / "OPERATIONS.md"


def load_reference() -> ModuleType:
    path = SCRIPTS / "settings_reference.py"
    spec = importlib.util.spec_from_file_location("settings_reference", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


reference = load_reference()


def test_configuration_reference_matches_settings():
    script = SCRIPTS / "settings_reference.py"
    result = run([sys.executable, str(script), "--check", str(OPERATIONS)])
    assert result.returncode == 0, result.stdout + result.stderr
    document = OPERATIONS.read_text(encoding="utf-8")
    for name in Settings.model_fields:
        assert f"| `PLANT_ICD_{name.upper()}` |" in document, name
    # One row checked cell by cell against config.py: Field(default=10, ge=1, le=1000, ...).
    top_k_row = "| `PLANT_ICD_DEFAULT_TOP_K` | `10` | integer ≥ 1, ≤ 1000 |"
    assert f"{top_k_row} codes returned when top_k unset |" in document
    assert "| `PLANT_ICD_INFERENCE_THREADS` | unset | integer ≥ 1 or unset |" in document
    assert "| `PLANT_ICD_ENVIRONMENT` | `development` | `development`, `production` |" in document


def test_a_stale_reference_is_caught(tmp_path: Path):
    stale = tmp_path / "OPERATIONS.md"
    lines = OPERATIONS.read_text(encoding="utf-8").splitlines(keepends=True)
    stale.write_text(
        "".join(line for line in lines if "PLANT_ICD_RETRY_AFTER_SECONDS` |" not in line),
        encoding="utf-8",
    )
    assert reference.main(["--check", str(stale)]) == 1
    assert reference.main(["--write", str(stale)]) == 0
    assert stale.read_text(encoding="utf-8") == OPERATIONS.read_text(encoding="utf-8")


def test_every_setting_needs_a_meaning():
    undocumented = [
        name
        for name, field in Settings.model_fields.items()
        if not field.description and name not in reference.NOTES
    ]
    assert undocumented == []
    # A note for a setting that has gained a description would hide the description.
    assert not [name for name in reference.NOTES if Settings.model_fields[name].description]


def test_operations_names_every_metric_and_alert():
    document = OPERATIONS.read_text(encoding="utf-8")
    exported = exported_series_names()
    for family in set(exported.values()):
        exposed = f"{family}_total" if f"{family}_total" in exported else family
        assert f"`{exposed}`" in document, exposed
    for rule in load_yaml(PROMETHEUS / "alerts.yml")["groups"][0]["rules"]:
        assert f"`{rule['alert']}`" in document, rule["alert"]


def test_operations_has_measured_sizing_and_the_runbooks():
    document = OPERATIONS.read_text(encoding="utf-8")
    sizing = document[document.index("## How far one pod goes") :]
    assert "PLACEHOLDER" not in sizing and "TBD" not in sizing
    assert "benchmarks/load_service.py" in sizing  # the numbers name the command behind them
    for heading in (
        "## Configuration reference",
        "## Running with Docker Compose",
        "## Kubernetes",
        "## Upgrading",
        "## Backups",
        "## Metrics and alerts",
        "## Retraining from the coders' feedback",
        "## How far one pod goes",
    ):
        assert heading in document, heading
