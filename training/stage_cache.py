"""The stage cache: each training stage's output under `work_dir`, named by a hash of everything
it depends on, the source code that computes it included, so a re-run skips finished work and a
change to that code recomputes instead of reusing a stale result."""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np


def stage_key(*parts: Any) -> str:
    """16 hex digits of sha256 over the JSON of `parts` (dicts with sorted keys)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


@cache
def code_digest(*sources: str | type) -> str:
    """sha256 of the source of modules (by dotted name) and classes: what a stage runs."""
    digest = hashlib.sha256()
    for source in sources:
        if isinstance(source, str):
            module = importlib.import_module(source)
            digest.update(Path(inspect.getfile(module)).read_bytes())
        else:
            digest.update(inspect.getsource(source).encode("utf-8"))
    return digest.hexdigest()[:16]


class StageCache:
    """Files under `work_dir` named `<stage>-<key><suffix>`."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        work_dir.mkdir(parents=True, exist_ok=True)

    def path(self, stage: str, key: str, suffix: str) -> Path:
        return self.work_dir / f"{stage}-{key}{suffix}"

    def report(self, stage: str, key: str) -> dict[str, Any] | None:
        path = self.path(stage, key, ".json")
        return json.loads(path.read_text()) if path.is_file() else None

    def save_report(self, stage: str, key: str, report: dict[str, Any]) -> None:
        path = self.path(stage, key, ".json")
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(report, indent=2, default=float))
        tmp.replace(path)

    def save_array(self, path: Path, array: np.ndarray) -> None:
        """Write then rename, so a crash never leaves a truncated entry under its final name."""
        tmp = path.with_name(path.name + ".tmp.npy")
        np.save(tmp, array)
        tmp.replace(path)
