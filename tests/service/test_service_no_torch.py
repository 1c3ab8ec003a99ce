"""The service runs with the training stack absent: torch, onnx, transformers, scikit-learn,
scipy and `training` are hidden from the interpreter, and a full predict-and-review round works."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.service.service_testing import REPO

HIDDEN = ("torch", "training", "onnx", "transformers", "sklearn", "scipy")

SCRIPT = """
import sys

HIDDEN = {hidden!r}


class HideTrainingStack:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
            raise ImportError(f"{{name}} is hidden: the service must not import it")
        return None


sys.meta_path.insert(0, HideTrainingStack())

import time

from fastapi.testclient import TestClient

from service.cli import app as cli  # noqa: F401  (the commands import cleanly too)
from service.core.config import Settings
from service.db import admin
from service.main import create_app

url = "sqlite:///{database}"
admin.upgrade(url)
app = create_app(Settings(bundle_dir={bundle!r}, database_url=url, log_level="WARNING"))
with TestClient(app) as client:
    for _ in range(3000):
        if client.get("/readyz").status_code == 200:
            break
        time.sleep(0.01)
    created = client.post("/v1/predictions", json={{"text": "Fever and cough."}})
    assert created.status_code == 201, created.text
    pid = created.json()["prediction_id"]
    feedback = client.post(
        f"/v1/predictions/{{pid}}/feedback",
        json={{
            "coder_id": "c",
            "decisions": [{{"code": "N44.8", "decision": "added"}}],
            "undecided": "reject",
        }},
    )
    assert feedback.status_code == 201, feedback.text
    assert client.get("/v1/feedback/export").status_code == 200
loaded = sorted(m for m in sys.modules if m.split(".")[0] in HIDDEN)
assert not loaded, loaded
print("served without the training stack")
"""


def test_service_runs_without_torch_or_training(bundle_dir: Path, tmp_path: Path) -> None:
    script = textwrap.dedent(SCRIPT).format(
        hidden=HIDDEN, database=tmp_path / "audit.db", bundle=str(bundle_dir)
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "served without the training stack" in result.stdout
