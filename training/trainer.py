"""A small epoch loop: train, score on dev, keep the best state, stop early.

Fine-tuning runs each stage through it; it knows nothing of the network beyond `state_dict`.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field

from torch import nn


@dataclass
class TrainerReport:
    epochs_run: int
    best_epoch: int  # 0: no epoch beat the starting state
    best_score: float
    history: list[dict[str, float]] = field(default_factory=list)  # epoch, train_loss, score


def train_with_early_stopping(
    model: nn.Module,
    epochs: int,
    patience: int,
    train_epoch: Callable[[int], float],
    score: Callable[[], float],
    on_epoch: Callable[[dict[str, float]], None] | None = None,
    score_name: str = "score",
) -> TrainerReport:
    """Run up to `epochs` epochs (`train_epoch(epoch)` returns the mean training loss), scoring
    after each; stop after `patience` epochs without a higher score, and leave `model` in the
    state of its best-scoring epoch (save-best). `on_epoch` sees each epoch's history row."""
    best_score, best_epoch = -math.inf, 0
    best_state = copy.deepcopy(model.state_dict())
    history: list[dict[str, float]] = []
    epochs_run = 0
    for epoch in range(1, epochs + 1):
        epochs_run = epoch
        train_loss = train_epoch(epoch)
        value = score()
        history.append({"epoch": epoch, "train_loss": train_loss, score_name: value})
        if on_epoch is not None:
            on_epoch(history[-1])
        if value > best_score:
            best_score, best_epoch = value, epoch
            best_state = copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= patience:
            break
    model.load_state_dict(best_state)
    return TrainerReport(epochs_run, best_epoch, float(best_score), history)


def train_fixed_epochs(
    model: nn.Module,
    epochs: int,
    train_epoch: Callable[[int], float],
    on_epoch: Callable[[dict[str, float]], None] | None = None,
) -> TrainerReport:
    """Run exactly `epochs` epochs and keep the last state: for a refit whose epoch count was
    selected before (no held-out split left to score)."""
    history: list[dict[str, float]] = []
    for epoch in range(1, epochs + 1):
        history.append({"epoch": epoch, "train_loss": train_epoch(epoch)})
        if on_epoch is not None:
            on_epoch(history[-1])
    return TrainerReport(epochs, epochs, math.nan, history)
