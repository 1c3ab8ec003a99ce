"""Fixtures shared by the training tests: a synthetic CodiEsp tree and the real corpus path."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.corpus_location import REAL_CODIESP, missing_codiesp_reason
from tests.training.synthetic import write_synthetic_codiesp


@pytest.fixture(scope="session")
def synthetic_codiesp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_codiesp(tmp_path_factory.mktemp("codiesp"))


@pytest.fixture
def real_codiesp() -> Path:
    """The real corpus where `plant-icd` would find it (tests.corpus_location), else skip."""
    if REAL_CODIESP is None:
        pytest.skip(missing_codiesp_reason())
    return REAL_CODIESP
