"""The service runs with the training stack absent: torch, onnx, transformers, scikit-learn,
scipy and `training` are hidden from the interpreter, and a full predict-and-review round works,
both in-process and through the real `plant-icd` entry point (db upgrade, keys create, serve),
which names the extra a training command would need."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap
import time
import urllib.request
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


# `plant-icd ARGS` through the console entry point (plant_icd.cli:main), training stack hidden.
ENTRY_POINT = """
import sys

HIDDEN = {hidden!r}


class HideTrainingStack:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in HIDDEN:
            raise ModuleNotFoundError(f"{{name}} is hidden: the service must not import it")
        return None


sys.meta_path.insert(0, HideTrainingStack())
sys.argv[0] = "plant-icd"
from plant_icd.cli import main

main()
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_the_plant_icd_command_serves_without_the_training_stack(
    bundle_dir: Path, tmp_path: Path
) -> None:
    runner = tmp_path / "plant_icd_without_training.py"
    runner.write_text(textwrap.dedent(ENTRY_POINT).format(hidden=HIDDEN), encoding="utf-8")
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PLANT_ICD_DATABASE_URL": f"sqlite:///{tmp_path / 'audit.db'}",
        "PLANT_ICD_BUNDLE_DIR": str(bundle_dir),
        "PLANT_ICD_LOG_LEVEL": "WARNING",
    }

    def plant_icd(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(runner), *args],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    listed = plant_icd("--help")
    assert listed.returncode == 0, listed.stderr
    assert "serve" in listed.stdout and "[needs training" in listed.stdout
    refused = plant_icd("train", "--out", str(tmp_path / "never"))
    assert refused.returncode == 1
    assert "install plant-icd[train] to use train" in refused.stderr
    assert plant_icd("db", "upgrade").returncode == 0
    created = plant_icd("keys", "create", "--name", "ehr", "--role", "ehr")
    assert created.returncode == 0, created.stderr
    key = next(line[5:] for line in created.stdout.splitlines() if line.startswith("key: "))

    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, str(runner), "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, server.communicate()[0]
            try:
                with urllib.request.urlopen(f"{base}/readyz", timeout=2) as ready:
                    if ready.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "not ready within 60 s"
            time.sleep(0.2)
        request = urllib.request.Request(
            f"{base}/v1/predictions",
            data=json.dumps({"text": "Fever and cough."}).encode(),
            headers={"Content-Type": "application/json", "X-API-Key": key},
        )
        with urllib.request.urlopen(request, timeout=30) as created_prediction:
            assert created_prediction.status == 201
            assert json.load(created_prediction)["codes"]
    finally:
        server.terminate()
        server.wait(timeout=30)
