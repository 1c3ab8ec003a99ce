"""Threshold tuning on small dev splits whose best thresholds are known by construction."""

from __future__ import annotations

import numpy as np
import pytest

from training.metrics import micro_prf
from training.thresholds import (
    DEFAULT_GRID,
    tune_global_threshold,
    tune_per_code_thresholds,
    tune_thresholds,
)


def test_default_grid_is_clean_hundredths() -> None:
    assert DEFAULT_GRID.size == 99
    assert DEFAULT_GRID[0] == 0.01 and DEFAULT_GRID[34] == 0.35 and DEFAULT_GRID[-1] == 0.99


def test_global_threshold_separable() -> None:
    # Gold pairs score 0.7-0.9, the rest 0.1-0.2: every threshold in (0.2, 0.7] gives F1 1,
    # and the smallest such grid value, 0.21, wins the tie.
    y_true = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], dtype=bool)
    y_score = np.array([[0.9, 0.1], [0.2, 0.7], [0.8, 0.75], [0.15, 0.2]])
    threshold, f1 = tune_global_threshold(y_true, y_score)
    assert threshold == 0.21
    assert f1 == 1.0
    # A custom grid is searched as given (sorted); 0.5 and 0.6 tie, the smaller wins.
    assert tune_global_threshold(y_true, y_score, grid=[0.6, 0.5, 0.1]) == (0.5, 1.0)


def test_global_threshold_is_the_grid_maximum_of_micro_f1() -> None:
    generator = np.random.default_rng(1)
    y_true = generator.random((30, 8)) < 0.25
    # Informative but noisy scores, so micro-F1 has a clear interior maximum.
    y_score = np.clip(0.35 * y_true + 0.65 * generator.random((30, 8)), 0.0, 1.0)
    threshold, f1 = tune_global_threshold(y_true, y_score)
    brute_force = [micro_prf(y_true, y_score >= t).f1 for t in DEFAULT_GRID]
    assert f1 == pytest.approx(max(brute_force))
    assert threshold == DEFAULT_GRID[int(np.argmax(brute_force))]
    assert micro_prf(y_true, y_score >= threshold).f1 == pytest.approx(f1)


def _per_code_dev_split() -> tuple[np.ndarray, np.ndarray]:
    """8 documents x 5 codes; the global threshold used with it is 0.5."""
    y_true = np.zeros((8, 5), dtype=bool)
    y_score = np.full((8, 5), 0.1)
    # Code 0: 4 positives (0.8-0.95), negatives at 0.6 and 0.55 pass 0.5 (F1 there 8/10);
    # 0.61 is the smallest grid value separating them -> F1 1.
    y_true[:4, 0] = True
    y_score[:6, 0] = [0.8, 0.85, 0.9, 0.95, 0.6, 0.55]
    # Code 1: same pattern but only 2 positives -> too rare, keeps the global 0.5.
    y_true[:2, 1] = True
    y_score[:3, 1] = [0.9, 0.9, 0.6]
    # Code 2: absent from dev (a negative even scores 0.7) -> keeps the global 0.5.
    y_score[0, 2] = 0.7
    # Code 3: 3 positives at 0.9, already perfect at 0.5 -> no strict gain, keeps 0.5.
    y_true[:3, 3] = True
    y_score[:3, 3] = 0.9
    # Code 4: 3 positives scoring below the global threshold (F1 0 at 0.5) -> lowered to 0.11.
    y_true[:3, 4] = True
    y_score[:3, 4] = [0.3, 0.35, 0.4]
    return y_true, y_score


def test_per_code_thresholds_and_rare_code_fallback() -> None:
    y_true, y_score = _per_code_dev_split()
    thresholds = tune_per_code_thresholds(y_true, y_score, 0.5, min_positives=3)
    assert thresholds.tolist() == [0.61, 0.5, 0.5, 0.5, 0.11]
    # With min_positives=2, code 1 qualifies and gets its own threshold too.
    thresholds = tune_per_code_thresholds(y_true, y_score, 0.5, min_positives=2)
    assert thresholds.tolist() == [0.61, 0.61, 0.5, 0.5, 0.11]
    with pytest.raises(ValueError, match="min_positives"):
        tune_per_code_thresholds(y_true, y_score, 0.5, min_positives=0)


def test_per_code_threshold_may_not_lower_micro_f1() -> None:
    # Code 0 carries the split: 10 positives at 0.9, negatives 0.1. Code 1 has 3 positives at
    # 0.3 below 17 negatives at 0.35: its only non-zero F1 (2*3 / (20 + 3) = 6/23) needs a
    # threshold <= 0.3 that fires on all 20 documents. At the global 0.5, TP0 = 10, predicted0
    # = 10, gold = 13: the move adds TP 3 for 20 predictions, 3 * (10 + 13) = 69 < 10 * 20 = 200,
    # so it would lower micro-F1 (20/23 -> 26/43) and is refused.
    y_true = np.zeros((20, 2), dtype=bool)
    y_score = np.full((20, 2), 0.1)
    y_true[:10, 0] = True
    y_score[:10, 0] = 0.9
    y_true[:3, 1] = True
    y_score[:, 1] = 0.35
    y_score[:3, 1] = 0.3
    assert tune_per_code_thresholds(y_true, y_score, 0.5).tolist() == [0.5, 0.5]
    # Without the guard the code's own F1 wins, at the smallest tied grid value.
    unguarded = tune_per_code_thresholds(y_true, y_score, 0.5, protect_micro_f1=False)
    assert unguarded.tolist() == [0.5, 0.01]


def test_tune_thresholds_combines_both_steps() -> None:
    y_true, y_score = _per_code_dev_split()
    # Global: at 0.11 all 12 gold pairs pass, with 4 false alarms (codes 0, 0, 1, 2), so
    # micro-F1 = 24 / 28 = 6/7; any higher threshold first loses code 4's positives at 0.3.
    assert tune_global_threshold(y_true, y_score) == (0.11, pytest.approx(6 / 7))
    tuned = tune_thresholds(y_true, y_score)
    assert tuned.global_threshold == 0.11
    assert tuned.min_positives == 3
    # Code 0 moves to 0.61 (drops its 2 false alarms); rare code 1, absent code 2 and the
    # already-perfect codes 3 and 4 keep the global value.
    assert tuned.per_code.tolist() == [0.61, 0.11, 0.11, 0.11, 0.11]
    # Dev micro-F1 rises to 24 / 26 = 12/13.
    assert micro_prf(y_true, tuned.apply(y_score)).f1 == pytest.approx(12 / 13)
