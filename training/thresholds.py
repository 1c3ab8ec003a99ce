"""Decision thresholds tuned on a dev split: one global threshold maximising micro-F1, then
per-code overrides for codes with enough dev positives. The result is `model.thresholds.Thresholds`,
the record the bundle stores.

A code is predicted when `score >= threshold` (`training.metrics.apply_thresholds`).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from model.thresholds import DEFAULT_MIN_POSITIVES, Thresholds
from training.metrics import as_label_matrix, as_score_matrix, f1_from_counts

# 0.01, 0.02, ..., 0.99, rounded so stored values read as written (0.35, not 0.35000000000000003).
DEFAULT_GRID: npt.NDArray[np.float64] = np.round(np.linspace(0.01, 0.99, 99), 2)


def _grid(grid: npt.ArrayLike | None) -> npt.NDArray[np.float64]:
    values = DEFAULT_GRID if grid is None else np.asarray(grid, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError("the threshold grid must be a non-empty 1-D sequence")
    if not np.isfinite(values).all():
        raise ValueError("the threshold grid must hold finite numbers")
    # Sorted ascending so that argmax (first maximum) is the smallest tied threshold.
    return np.unique(values)


def _counts_per_threshold(
    positive_scores: npt.NDArray[np.float64],
    negative_scores: npt.NDArray[np.float64],
    grid: npt.NDArray[np.float64],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.int64]]:
    """(true positives, predicted) at each grid threshold, both (G,).

    Sorting once and counting with searchsorted costs O((P + Q + G) log(P + Q)) instead of
    thresholding the whole (N, C) matrix once per grid value.
    """
    positives = np.sort(positive_scores)
    negatives = np.sort(negative_scores)
    # Scores >= t are predicted: everything from the first index with score >= t onwards.
    true_positives = positives.size - np.searchsorted(positives, grid, side="left")  # (G,)
    false_positives = negatives.size - np.searchsorted(negatives, grid, side="left")  # (G,)
    return true_positives.astype(np.int64), (true_positives + false_positives).astype(np.int64)


def _f1_per_threshold(
    true_positives: npt.NDArray[np.int64], predicted: npt.NDArray[np.int64], n_gold: int
) -> npt.NDArray[np.float64]:
    """F1 (G,) from counts; FP = predicted - TP, FN = gold - TP."""
    return np.array(
        [
            f1_from_counts(int(tp), int(count - tp), int(n_gold - tp))
            for tp, count in zip(true_positives, predicted, strict=True)
        ]
    )


def tune_global_threshold(
    y_true: npt.ArrayLike, y_score: npt.ArrayLike, grid: npt.ArrayLike | None = None
) -> tuple[float, float]:
    """(threshold, micro-F1) maximising micro-F1 over a fixed grid; ties go to the smaller one.

    The default grid is 0.01..0.99 in steps of 0.01: deterministic and independent of the dev
    scores, so the choice cannot fit individual dev documents' scores exactly. The smaller of
    tied thresholds is preferred because the service assists human coders, for whom a
    suggestion to dismiss costs less than a missed code.
    """
    labels = as_label_matrix(y_true)
    scores = as_score_matrix(y_score, labels.shape)
    candidates = _grid(grid)
    true_positives, predicted = _counts_per_threshold(scores[labels], scores[~labels], candidates)
    f1 = _f1_per_threshold(true_positives, predicted, int(labels.sum()))  # (G,)
    best = int(np.argmax(f1))  # first maximum = smallest tied threshold
    return float(candidates[best]), float(f1[best])


def tune_per_code_thresholds(
    y_true: npt.ArrayLike,
    y_score: npt.ArrayLike,
    global_threshold: float,
    min_positives: int = DEFAULT_MIN_POSITIVES,
    grid: npt.ArrayLike | None = None,
    *,
    protect_micro_f1: bool = True,
) -> npt.NDArray[np.float64]:
    """Per-code thresholds (C,): each code's F1-maximising grid value, else the global threshold.

    A code gets its own threshold only if it has >= `min_positives` positive dev documents AND
    its best grid threshold beats the code's dev F1 at the global threshold strictly; among tied
    grid values the smallest wins. Rarer codes, codes absent from dev and codes the grid cannot
    improve keep `global_threshold`: a threshold fitted to one or two examples is noise, and
    an equal-F1 move away from the global value only adds variance.

    `protect_micro_f1` (default on) only considers grid values that, applied to that code alone,
    do not lower dev micro-F1 below its value at the global threshold. Without it, a code whose
    few positives score low is pushed to a tiny threshold that fires on most documents (code F1
    0 -> 0.01 at the cost of hundreds of false alarms). Micro-F1 = 2TP / (predicted + gold), so
    the test per code is dTP * (predicted0 + gold) >= TP0 * dpredicted; these inequalities add
    up, so the accepted changes together never lower dev micro-F1 either.
    """
    labels = as_label_matrix(y_true)
    scores = as_score_matrix(y_score, labels.shape)
    if isinstance(min_positives, bool) or not isinstance(min_positives, int) or min_positives < 1:
        raise ValueError(f"min_positives must be a positive integer; got {min_positives!r}")
    if not math.isfinite(global_threshold):
        raise ValueError(f"global_threshold must be finite; got {global_threshold!r}")
    candidates = _grid(grid)
    thresholds = np.full(labels.shape[1], float(global_threshold))  # (C,)
    at_global = np.array([float(global_threshold)])
    global_decisions = scores >= global_threshold  # (N, C)
    # Micro counts over the whole split at the global threshold (integers: exact comparisons).
    total_true_positives = int(np.sum(global_decisions & labels))
    total_budget = int(global_decisions.sum()) + int(labels.sum())  # predicted0 + gold
    for column in np.flatnonzero(labels.sum(axis=0) >= min_positives):
        gold = labels[:, column]  # (N,)
        n_gold = int(gold.sum())
        positive_scores, negative_scores = scores[gold, column], scores[~gold, column]
        true_positives, predicted = _counts_per_threshold(
            positive_scores, negative_scores, candidates
        )
        f1 = _f1_per_threshold(true_positives, predicted, n_gold)  # (G,)
        base_true_positives, base_predicted = _counts_per_threshold(
            positive_scores, negative_scores, at_global
        )
        baseline = _f1_per_threshold(base_true_positives, base_predicted, n_gold)[0]
        if protect_micro_f1:
            gained = true_positives - base_true_positives[0]  # (G,)
            added = predicted - base_predicted[0]  # (G,)
            allowed = gained * total_budget >= total_true_positives * added  # (G,)
            f1 = np.where(allowed, f1, -1.0)
        best = int(np.argmax(f1))
        if f1[best] > baseline:
            thresholds[column] = candidates[best]
    return thresholds


def tune_thresholds(
    y_true: npt.ArrayLike,
    y_score: npt.ArrayLike,
    min_positives: int = DEFAULT_MIN_POSITIVES,
    grid: npt.ArrayLike | None = None,
    *,
    protect_micro_f1: bool = True,
) -> Thresholds:
    """Global threshold, then per-code overrides, on one dev split."""
    global_threshold, _ = tune_global_threshold(y_true, y_score, grid)
    per_code = tune_per_code_thresholds(
        y_true, y_score, global_threshold, min_positives, grid, protect_micro_f1=protect_micro_f1
    )
    return Thresholds(global_threshold, per_code, min_positives)
