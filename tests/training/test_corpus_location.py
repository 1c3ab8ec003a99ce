"""The tests find the real corpus where users put it: $PLANT_ICD_CODIESP first, as the CLI does."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import corpus_location
from training.corpora.codiesp import CODIESP_ENV, locate_codiesp


def test_the_environment_variable_comes_first(
    synthetic_codiesp: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CODIESP_ENV, str(synthetic_codiesp))
    assert corpus_location.codiesp_candidates()[0] == synthetic_codiesp
    assert corpus_location.find_real_codiesp() == synthetic_codiesp
    # ... which is where the command line reads it from too.
    assert locate_codiesp(download=False) == synthetic_codiesp


def test_the_skip_reason_names_every_place_looked_at(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(CODIESP_ENV, str(tmp_path / "nowhere"))
    reason = corpus_location.missing_codiesp_reason()
    assert str(tmp_path / "nowhere") in reason
    assert "shared/codiesp" in reason and CODIESP_ENV in reason
