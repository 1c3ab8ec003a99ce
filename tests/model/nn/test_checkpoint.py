"""Checkpoints carry their config: a stage-cache entry written for one network is refused for
another, and a bare state dict (the older cache layout) reads back without one."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from model.nn.checkpoint import load_checkpoint, load_state, save_checkpoint
from model.nn.network import PlantClassifier, build_config


def test_a_checkpoint_round_trips_with_its_config(tmp_path: Path) -> None:
    torch.manual_seed(0)
    config = build_config(vocab_size=30, n_codes=3, emb_dim=4, hidden_dim=6, l2r_dim=2)
    model = PlantClassifier(config)
    path = tmp_path / "classifier.pt"
    save_checkpoint(path, config.to_dict(), model.state_dict())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["classifier.pt"]  # no temporary left
    stored, _ = load_checkpoint(path)
    assert stored == config.to_dict()
    again = PlantClassifier(
        build_config(vocab_size=30, n_codes=3, emb_dim=4, hidden_dim=6, l2r_dim=2)
    )
    again.load_state_dict(load_state(path, config.to_dict()))
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, again.state_dict()[name]), name

    other = build_config(vocab_size=30, n_codes=3, emb_dim=4, hidden_dim=8, l2r_dim=2)
    with pytest.raises(ValueError, match=r"classifier\.pt was written for config"):
        load_state(path, other.to_dict())


def test_a_bare_state_dict_reads_back_without_a_config(tmp_path: Path) -> None:
    path = tmp_path / "old.pt"
    torch.save({"weight": torch.ones(2)}, path)
    config, state = load_checkpoint(path)
    assert config is None and torch.equal(state["weight"], torch.ones(2))
    with pytest.raises(ValueError, match="written for config None"):
        load_state(path, {"any": 1})
