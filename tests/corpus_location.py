"""Where the tests find the real CodiEsp corpus: where the CLI looks, minus the download.

`$PLANT_ICD_CODIESP` first (as `plant-icd` reads it), then `../shared/codiesp` beside the
repository, then the download cache (`~/.cache/plant-icd/codiesp`). Tests that need the real text
skip, naming every place looked at, when none holds it; they never download it.
"""

from __future__ import annotations

import os
from pathlib import Path

from training.corpora.codiesp import CODIESP_ENV, default_cache_dir, find_codiesp_root

REPO = Path(__file__).resolve().parents[1]


def codiesp_candidates() -> list[Path]:
    """The folders looked at, in order."""
    candidates = [REPO.parent / "shared" / "codiesp", default_cache_dir()]
    configured = os.environ.get(CODIESP_ENV)
    if configured:
        candidates.insert(0, Path(configured))
    return candidates


def find_real_codiesp() -> Path | None:
    """The CodiEsp root of the first candidate that holds one, or None."""
    for candidate in codiesp_candidates():
        found = find_codiesp_root(candidate)
        if found is not None:
            return found
    return None


def missing_codiesp_reason() -> str:
    looked = ", ".join(str(path) for path in codiesp_candidates())
    return (
        f"the CodiEsp corpus was not found (looked in {looked}): set {CODIESP_ENV} to its folder, "
        "or run any `plant-icd` command on codiesp once to download it"
    )


# Resolved once per test session; tests compare against it or skip with missing_codiesp_reason().
REAL_CODIESP: Path | None = find_real_codiesp()
