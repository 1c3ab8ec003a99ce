"""The serving image's steps run as a plain script (no Docker engine): a fresh virtual environment
with the `serve` extra only (torch absent), migrations, the server through the image's entrypoint
in production mode, /readyz polled with the image's HEALTHCHECK, one note coded with a key."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import pytest

from tests.deploy.deploy_testing import SCRIPTS, run

# What pip prints when the package registry cannot be reached or does not have a package.
REGISTRY_TROUBLE = re.compile(
    r"NewConnectionError|Failed to establish a new connection|Temporary failure in name "
    r"resolution|Network is unreachable|ProxyError|ReadTimeoutError|No matching distribution "
    r"found|Could not find a version that satisfies"
)


@pytest.mark.deploy_smoke
@pytest.mark.timeout(330)
def test_serving_environment_builds_and_serves(tiny_bundle: Path, tmp_path: Path):
    result = run(
        ["bash", str(SCRIPTS / "serving-image-smoke.sh"), str(tiny_bundle), str(tmp_path)],
        timeout=300,
        # pip's own settings (index, cache) pass through; the script unsets PYTHONPATH.
        env={**os.environ, "PYTHON": sys.executable, "READY_TIMEOUT": "120"},
    )
    output = result.stdout + result.stderr
    if result.returncode == 3 and REGISTRY_TROUBLE.search(output):
        pytest.skip(f"pip could not reach the package registry: {REGISTRY_TROUBLE.search(output)}")
    assert result.returncode == 0, output[-6000:]
    assert "serving environment ok" in output and "no torch" in output
    assert re.search(r"ready: 200 .*\"ready\":true", output), output[-3000:]
    assert "401 without a key; metrics exported" in output
    # The environment really lacks torch and the training code, and the service came from it,
    # not from the checkout; its `plant-icd train` named the extra instead of running.
    assert "install plant-icd[train] to use train" in output
    venv_python = tmp_path / "venv" / "bin" / "python"
    probe = run(
        [
            str(venv_python),
            "-I",
            "-c",
            "import importlib.util as u, service; "
            "print(u.find_spec('torch') is None and u.find_spec('training') is None, "
            "service.__file__)",
        ],
        cwd=tmp_path,
    )
    absent, location = probe.stdout.split()
    assert absent == "True"
    assert location.startswith(str(tmp_path / "venv")), location
