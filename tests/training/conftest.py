"""Fixtures shared by the training tests: a synthetic CodiEsp tree and the real corpus path."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.training.synthetic import write_synthetic_codiesp

REAL_CODIESP = Path(__file__).resolve().parents[2].parent / "shared" / "codiesp"


@pytest.fixture(scope="session")
def synthetic_codiesp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_codiesp(tmp_path_factory.mktemp("codiesp"))


@pytest.fixture
def real_codiesp() -> Path:
    if not (REAL_CODIESP / "train" / "trainD.tsv").is_file():
        pytest.skip(f"CodiEsp corpus not found at {REAL_CODIESP} (needed for this real-text test)")
    return REAL_CODIESP
