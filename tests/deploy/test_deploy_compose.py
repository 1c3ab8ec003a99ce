"""docker-compose.yml: the stack's wiring read from the file, and the Compose client's own
validation (`docker compose config`, or Compose v1) where a client is installed."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from service.core.config import Settings
from tests.deploy.deploy_testing import DEPLOY, GRAFANA, PROMETHEUS, REPO, load_yaml, run

COMPOSE_FILE = REPO / "docker-compose.yml"
# Variables the image's entrypoint reads that are not settings themselves.
ENTRYPOINT_VARIABLES = {"PLANT_ICD_DATABASE_PASSWORD_FILE"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load_yaml(COMPOSE_FILE)


def test_services_and_start_order(compose: dict[str, Any]):
    services = compose["services"]
    assert set(services) == {"postgres", "migrate", "api", "prometheus", "grafana"}
    # The one-shot migration runs after PostgreSQL is healthy; the API after it succeeded.
    assert services["migrate"]["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert services["api"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )
    assert services["migrate"]["command"] == ["plant-icd", "db", "upgrade"]
    assert services["migrate"]["restart"] == "no"
    assert services["api"]["command"][:2] == ["plant-icd", "serve"]
    # Both run the same serving image with the same settings.
    assert services["migrate"]["image"] == services["api"]["image"]
    assert services["migrate"]["environment"] == services["api"]["environment"]
    assert services["api"]["build"]["target"] == "serve"
    assert "healthcheck" in services["postgres"]


def test_postgres_keeps_its_data_in_a_named_volume(compose: dict[str, Any]):
    postgres = compose["services"]["postgres"]
    (mount,) = postgres["volumes"]
    volume, target = mount.split(":")
    assert target == "/var/lib/postgresql/data"
    assert volume in compose["volumes"]


def test_settings_are_real_and_secrets_come_from_files(compose: dict[str, Any]):
    environment: dict[str, str] = compose["services"]["api"]["environment"]
    settings = {f"PLANT_ICD_{name.upper()}" for name in Settings.model_fields}
    secret_files = {f"{name}_FILE" for name in settings}
    for variable in environment:
        assert variable in settings | secret_files | ENTRYPOINT_VARIABLES, variable
    # The URL carries no password; the password and the keys are mounted secret files.
    assert "@postgres:5432/" in environment["PLANT_ICD_DATABASE_URL"]
    assert ":" not in environment["PLANT_ICD_DATABASE_URL"].split("//")[1].split("@")[0]
    assert environment["PLANT_ICD_DATABASE_PASSWORD_FILE"] == "/run/secrets/db_password"
    assert environment["PLANT_ICD_API_KEYS_FILE"] == "/run/secrets/api_keys"
    assert compose["services"]["postgres"]["environment"]["POSTGRES_PASSWORD_FILE"] == (
        "/run/secrets/db_password"
    )
    for name, secret in compose["secrets"].items():
        assert secret["file"].startswith("${PLANT_ICD_SECRETS_DIR:-./deploy/compose/secrets}/"), (
            name
        )
    ignored = (DEPLOY / "compose" / "secrets" / ".gitignore").read_text(encoding="utf-8")
    assert ignored.splitlines()[1:] == ["*", "!.gitignore", "!README.md"]


def test_the_bundle_is_mounted_read_only(compose: dict[str, Any]):
    (mount,) = compose["services"]["api"]["volumes"]
    assert mount["target"] == "/srv/bundle"
    assert mount["read_only"] is True


def test_prometheus_scrapes_the_api_and_grafana_is_provisioned(compose: dict[str, Any]):
    services = compose["services"]
    assert "./deploy/prometheus:/etc/prometheus:ro" in services["prometheus"]["volumes"]
    scrape = load_yaml(PROMETHEUS / "prometheus.yml")
    (api_job,) = [job for job in scrape["scrape_configs"] if job["job_name"] == "plant-icd"]
    (target,) = api_job["static_configs"][0]["targets"]
    host, port = target.split(":")
    assert host == "api" and port == services["api"]["command"][-1] == "8000"
    assert scrape["rule_files"] == ["alerts.yml"]

    mounts = dict(
        volume.rsplit(":", 2)[:2] for volume in services["grafana"]["volumes"] if "./" in volume
    )
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    provider = load_yaml(GRAFANA / "provisioning" / "dashboards" / "plant-icd.yml")
    assert mounts["./deploy/grafana/dashboards"] == provider["providers"][0]["options"]["path"]
    source = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")
    assert source["datasources"][0]["url"] == "http://prometheus:9090"
    assert "127.0.0.1:9090:9090" in services["prometheus"]["ports"]


def compose_command() -> list[str]:
    docker = shutil.which("docker")
    if docker and run([docker, "compose", "version"], timeout=30).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    if legacy:
        return [legacy]
    pytest.skip(
        "no Compose client (neither the `docker compose` plugin nor docker-compose): "
        "run scripts/install-test-prereqs.sh"
    )


def test_compose_client_accepts_the_file(tmp_path: Path):
    command = compose_command()
    result = run([*command, "-f", str(COMPOSE_FILE), "config", "--quiet"], timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    rendered = run([*command, "-f", str(COMPOSE_FILE), "config", "--services"], timeout=60)
    assert set(rendered.stdout.split()) == {"postgres", "migrate", "api", "prometheus", "grafana"}

    # The client really validates: a wrong depends_on condition is refused.
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(
        COMPOSE_FILE.read_text(encoding="utf-8").replace(
            "service_completed_successfully", "service_finished"
        ),
        encoding="utf-8",
    )
    refused = run(
        [*command, "-f", str(broken), "--project-directory", str(REPO), "config", "--quiet"],
        timeout=60,
    )
    assert refused.returncode != 0
    assert "service_finished" in refused.stdout + refused.stderr
