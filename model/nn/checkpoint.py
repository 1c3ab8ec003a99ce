"""Checkpoints that carry their config (as nanoGPT's do): `{"config": ..., "state": ...}`, so a
checkpoint says what module it belongs to and a stale one is caught by comparing configs.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import Tensor


def save_checkpoint(path: Path, config: Mapping[str, Any], state: Mapping[str, Tensor]) -> None:
    """Write the checkpoint beside `path`, then rename: a crash never leaves half a file."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"config": dict(config), "state": dict(state)}, tmp)
    tmp.replace(path)


def load_checkpoint(
    path: Path, map_location: torch.device | str | None = None
) -> tuple[dict[str, Any] | None, dict[str, Tensor]]:
    """(config, state) of a checkpoint; a bare state dict (written before checkpoints carried
    their config) gives (None, state). Only tensors and plain values are unpickled."""
    loaded = torch.load(path, weights_only=True, map_location=map_location)
    if isinstance(loaded, dict) and set(loaded) == {"config", "state"}:
        return loaded["config"], loaded["state"]
    return None, loaded


def load_state(
    path: Path, expected: Mapping[str, Any], map_location: torch.device | str | None = None
) -> dict[str, Tensor]:
    """The state of a checkpoint written for exactly `expected`; ValueError naming the file
    otherwise (the cache entry is stale: delete it)."""
    config, state = load_checkpoint(path, map_location)
    if config != dict(expected):
        raise ValueError(
            f"{path} was written for config {config}, not {dict(expected)}: delete it so the "
            "stage runs again"
        )
    return state
