"""The image's entrypoint (secret files to settings, then exec) and its health check script."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from types import ModuleType

import pytest
from sqlalchemy.engine import make_url

from service.core.config import Settings
from tests.deploy.deploy_testing import DEPLOY, free_port

ENTRYPOINT = DEPLOY / "docker" / "entrypoint.py"
HEALTHCHECK = DEPLOY / "docker" / "healthcheck.py"


def load(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(path.stem, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


entrypoint = load(ENTRYPOINT)
healthcheck = load(HEALTHCHECK)


def secret(tmp_path: Path, name: str, content: str) -> str:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    return str(path)


def test_a_setting_file_sets_the_setting_without_the_trailing_newline(tmp_path: Path):
    environ = {
        "PLANT_ICD_DATABASE_URL_FILE": secret(tmp_path, "url", "sqlite:///x.db\n"),
        "PLANT_ICD_LOG_LEVEL_FILE": secret(tmp_path, "level", "DEBUG"),
        "OTHER_FILE": "/not/ours",
    }
    assert entrypoint.resolve_secret_files(environ) == {
        "PLANT_ICD_DATABASE_URL": "sqlite:///x.db",
        "PLANT_ICD_LOG_LEVEL": "DEBUG",
    }


def test_settings_that_are_paths_are_left_to_the_service(tmp_path: Path):
    # API_KEYS_FILE is a setting whose value is a path: it must not become PLANT_ICD_API_KEYS.
    file_settings = [name for name in Settings.model_fields if name.endswith("_file")]
    assert "api_keys_file" in file_settings
    environ = {f"PLANT_ICD_{name.upper()}": "/run/secrets/x" for name in file_settings}
    assert entrypoint.resolve_secret_files(environ) == {}


def test_the_password_file_goes_into_the_database_url(tmp_path: Path):
    environ = {
        "PLANT_ICD_DATABASE_URL": "postgresql://plant_icd@postgres:5432/plant_icd",
        "PLANT_ICD_DATABASE_PASSWORD_FILE": secret(tmp_path, "pw", "p@ss:w/rd\n"),
    }
    resolved = entrypoint.resolve_secret_files(environ)
    # '@' ':' '/' are percent-encoded (%40 %3A %2F) so the URL still parses; psycopg 3 driver.
    assert resolved == {
        "PLANT_ICD_DATABASE_URL": (
            "postgresql+psycopg://plant_icd:p%40ss%3Aw%2Frd@postgres:5432/plant_icd"
        )
    }
    url = Settings(database_url=resolved["PLANT_ICD_DATABASE_URL"]).database_url
    assert make_url(url).password == "p@ss:w/rd"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"PLANT_ICD_NO_SUCH_THING_FILE": "/x"}, "PLANT_ICD_NO_SUCH_THING_FILE names no setting"),
        (
            {"PLANT_ICD_LOG_LEVEL": "INFO", "PLANT_ICD_LOG_LEVEL_FILE": "/x"},
            "both PLANT_ICD_LOG_LEVEL and PLANT_ICD_LOG_LEVEL_FILE are set",
        ),
        ({"PLANT_ICD_LOG_LEVEL_FILE": "/no/such/file"}, "cannot read the secret file"),
        ({"PLANT_ICD_DATABASE_PASSWORD_FILE": "/x"}, "without PLANT_ICD_DATABASE_URL"),
        (
            {
                "PLANT_ICD_DATABASE_URL": "postgresql+psycopg://u:old@h/db",
                "PLANT_ICD_DATABASE_PASSWORD_FILE": "PASSWORD",
            },
            "already holds a password",
        ),
    ],
)
def test_misconfigured_secrets_are_refused_with_the_reason(
    environ: dict[str, str], message: str, tmp_path: Path
):
    environ = {
        key: secret(tmp_path, "pw", "s3cret") if value == "PASSWORD" else value
        for key, value in environ.items()
    }
    with pytest.raises(entrypoint.EntrypointError, match=message):
        entrypoint.resolve_secret_files(environ)


def test_the_entrypoint_execs_the_command_with_the_secrets(tmp_path: Path):
    env = {
        "PATH": "/usr/bin:/bin",
        "PLANT_ICD_DATABASE_URL": "postgresql+psycopg://plant_icd@db/plant_icd",
        "PLANT_ICD_DATABASE_PASSWORD_FILE": secret(tmp_path, "pw", "hunter2\n"),
    }
    show = "import os; print(os.environ['PLANT_ICD_DATABASE_URL'])"
    result = subprocess.run(
        [sys.executable, str(ENTRYPOINT), sys.executable, "-c", show],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "postgresql+psycopg://plant_icd:hunter2@db/plant_icd"


def test_the_entrypoint_exits_2_on_a_bad_secret():
    result = subprocess.run(
        [sys.executable, str(ENTRYPOINT), "true"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": "/usr/bin:/bin", "PLANT_ICD_TYPO_FILE": "/x"},
        check=False,
    )
    assert result.returncode == 2
    assert "PLANT_ICD_TYPO_FILE names no setting" in result.stderr


class _Readiness(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        body = b'{"ready": false, "model": "loading", "database": "ok"}'
        self.send_response(self.status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def readiness_server(status: int) -> Iterator[str]:
    handler = type("Handler", (_Readiness,), {"status": status})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/readyz"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(("status", "exit_code"), [(200, 0), (503, 1)])
def test_healthcheck_exit_code_follows_readyz(status: int, exit_code: int):
    with readiness_server(status) as url:
        result = subprocess.run(
            [sys.executable, str(HEALTHCHECK)],
            capture_output=True,
            text=True,
            timeout=30,
            env={"HEALTHCHECK_URL": url},
            check=False,
        )
    assert result.returncode == exit_code
    assert result.stdout.startswith(str(status))
    if status == 503:
        assert '"model": "loading"' in result.stdout  # the reason reaches the container log


def test_healthcheck_fails_when_nothing_listens():
    healthy, reason = healthcheck.check(f"http://127.0.0.1:{free_port()}/readyz", timeout=2)
    assert not healthy
    assert reason.startswith("unreachable")
