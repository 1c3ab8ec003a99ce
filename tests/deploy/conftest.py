"""Fixtures for the deployment tests: a tiny real bundle, and the `deploy_smoke` marker for the
slow check that builds the serving environment from the package registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.model.bundle_factory import build_tiny_bundle


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "deploy_smoke: builds the serving environment in a fresh virtual environment with pip "
        "(about a minute; skipped when the package registry is unreachable)",
    )


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A complete bundle (ICD-10-CM R50.9, R05, I10, E11.9, R07.9, J18.9; top K 3)."""
    return build_tiny_bundle(tmp_path_factory.mktemp("deploy") / "bundle")
