"""Evaluation metrics for multi-label ICD coding: ranking (P@k, R@k, MAP), set-based (micro/macro
P/R/F1) and ROC AUC, over dense (documents, codes) arrays. training/metric_report.py groups them
by training frequency into the report the CLI prints and the bundle stores.

Conventions shared by every function here, so numbers are comparable across runs:

* `y_true` is (N, C), bool or 0/1 int; `y_score` is (N, C) float; columns follow one code list.
* Malformed input (wrong shapes, N = 0, C = 0, labels other than 0/1, NaN scores) raises
  `ValueError`. Input that is well formed but leaves a metric undefined (no document has a gold
  code, no code has both a positive and a negative, ...) yields `math.nan`, never an exception,
  because a frequency bucket or a small split can legitimately hit that case.
* Rankings sort by descending score; ties are broken by column index, lower first (a stable
  argsort on `-score`), so a ranking never depends on the sort algorithm or platform.
* A code is predicted when `score >= threshold` (see `apply_thresholds`).
* 0/0 in a precision, recall or F1 counts as 0.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

K_VALUES: tuple[int, ...] = (1, 3, 5, 8, 15)

BoolArray = npt.NDArray[np.bool_]
FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
MacroColumns = Literal["active", "all"]


# --------------------------------------------------------------------------------------------
# Input checks and shared helpers
# --------------------------------------------------------------------------------------------


def as_label_matrix(y_true: npt.ArrayLike, name: str = "y_true") -> BoolArray:
    labels = np.asarray(y_true)
    if labels.ndim != 2:
        raise ValueError(f"{name} must be 2-D (documents, codes); got shape {labels.shape}")
    if labels.shape[0] == 0:
        raise ValueError(f"{name} has no documents (N = 0): nothing to evaluate")
    if labels.shape[1] == 0:
        raise ValueError(f"{name} has no code columns (C = 0): check the code list")
    if labels.dtype != np.bool_:
        if not np.issubdtype(labels.dtype, np.number):
            raise ValueError(f"{name} must be bool or 0/1 numbers; got dtype {labels.dtype}")
        if not np.isin(labels, (0, 1)).all():
            raise ValueError(f"{name} must contain only 0 and 1 (or booleans)")
        labels = labels.astype(bool)
    return labels


def as_score_matrix(y_score: npt.ArrayLike, shape: tuple[int, ...]) -> FloatArray:
    scores = np.asarray(y_score, dtype=np.float64)
    if scores.shape != shape:
        raise ValueError(f"y_score has shape {scores.shape}, but y_true has shape {shape}")
    if np.isnan(scores).any():
        raise ValueError("y_score contains NaN; a ranking over NaN scores is undefined")
    return scores


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ValueError(f"k must be a positive integer; got {k!r}")


def _ratio(numerator: float, denominator: float) -> float:
    """numerator / denominator with the module's 0/0 -> 0 convention."""
    return float(numerator) / float(denominator) if denominator else 0.0


def f1_from_counts(true_positives: int, false_positives: int, false_negatives: int) -> float:
    # 2TP / (2TP + FP + FN) equals 2PR / (P + R) but is one exact integer division, so equal
    # F1 values compare equal (threshold tuning relies on that for its tie rule).
    return _ratio(2 * true_positives, 2 * true_positives + false_positives + false_negatives)


def ranking_order(y_score: npt.ArrayLike) -> IntArray:
    """Column indices per document, best first: (N, C). Ties go to the lower column index."""
    scores = np.asarray(y_score, dtype=np.float64)
    return np.argsort(-scores, axis=1, kind="stable").astype(np.int64)


def apply_thresholds(y_score: npt.ArrayLike, thresholds: float | npt.ArrayLike) -> BoolArray:
    """Decisions (N, C): a code is predicted when its score is >= its threshold.

    `thresholds` is a scalar or a (C,) array, one value per code column.
    """
    scores = np.asarray(y_score, dtype=np.float64)
    if scores.ndim != 2:
        raise ValueError(f"y_score must be 2-D (documents, codes); got shape {scores.shape}")
    cutoffs = np.asarray(thresholds, dtype=np.float64)
    if cutoffs.ndim == 1 and cutoffs.shape[0] != scores.shape[1]:
        raise ValueError(
            f"got {cutoffs.shape[0]} per-code thresholds for {scores.shape[1]} code columns"
        )
    if cutoffs.ndim > 1:
        raise ValueError(f"thresholds must be a scalar or shape (C,); got {cutoffs.shape}")
    if np.isnan(cutoffs).any():
        raise ValueError("thresholds contain NaN")
    return scores >= cutoffs  # (N, C); a (C,) array broadcasts over documents


# --------------------------------------------------------------------------------------------
# Ranking metrics
# --------------------------------------------------------------------------------------------


def _hits_at_k(labels: BoolArray, order: IntArray, k: int) -> IntArray:
    """Number of gold codes among each document's top k: (N,). `order` from `ranking_order`."""
    return np.take_along_axis(labels, order[:, :k], axis=1).sum(axis=1).astype(np.int64)


def _precision_at_k(labels: BoolArray, order: IntArray, k: int) -> float:
    return float(np.mean(_hits_at_k(labels, order, k) / k))


def _recall_at_k(labels: BoolArray, order: IntArray, k: int) -> float:
    n_gold = labels.sum(axis=1)  # (N,)
    coded = n_gold > 0
    if not coded.any():
        return math.nan
    return float(np.mean(_hits_at_k(labels, order, k)[coded] / n_gold[coded]))


def precision_at_k(y_true: npt.ArrayLike, y_score: npt.ArrayLike, k: int) -> float:
    """Mean over all documents of (#gold codes in the top k) / k.

    Documents without gold codes are counted (they score 0), so P@k falls when a split holds
    uncoded documents. The divisor is k even when k > C or k > #gold, as in the MIMIC literature
    (P@k therefore cannot reach 1 for a document with fewer than k gold codes). Ties in scores
    are broken by column index, lower first.
    """
    _check_k(k)
    labels = as_label_matrix(y_true)
    scores = as_score_matrix(y_score, labels.shape)
    return _precision_at_k(labels, ranking_order(scores), k)


def recall_at_k(y_true: npt.ArrayLike, y_score: npt.ArrayLike, k: int) -> float:
    """Mean over documents with at least one gold code of (#gold in the top k) / #gold.

    Documents without gold codes are excluded (recall is undefined for them); `nan` when no
    document has a gold code. Ties in scores are broken by column index, lower first.
    """
    _check_k(k)
    labels = as_label_matrix(y_true)
    scores = as_score_matrix(y_score, labels.shape)
    return _recall_at_k(labels, ranking_order(scores), k)


def average_precision(
    gold: Sequence[str] | set[str], ranked: Sequence[str], max_rank: int | None = None
) -> float:
    """AP of one ranked code list: sum of precision@i over ranks i holding a gold code, / #gold.

    Repeated codes in `ranked` keep their first position (later copies are dropped before ranks
    are counted, as the CodiEsp script does). `max_rank` cuts the list first. The divisor is the
    number of distinct gold codes, so gold codes never ranked contribute 0. `nan` without gold.
    """
    relevant = set(gold)
    if not relevant:
        return math.nan
    if max_rank is not None:
        _check_k(max_rank)
    seen: set[str] = set()
    hits = 0
    total = 0.0
    rank = 0
    for code in ranked:
        if code in seen:
            continue
        seen.add(code)
        rank += 1
        if max_rank is not None and rank > max_rank:
            break
        if code in relevant:
            hits += 1
            total += hits / rank
    return total / len(relevant)


def mean_average_precision(
    gold: Sequence[Sequence[str]],
    ranked: Sequence[Sequence[str]],
    *,
    max_rank: int | None = None,
    unranked_gold: Literal["zero", "skip"] = "zero",
) -> float:
    """MAP over gold documents, as CodiEsp tasks 1-2 score a submission.

    `gold[i]` and `ranked[i]` belong to the same document; `ranked[i]` is best first. A "gold
    document" has at least one gold code; documents without gold codes are skipped whatever was
    ranked for them. AP is `average_precision` (duplicates keep their first rank).

    The official script (`codiespD_P_evaluation.py`) delegates to trectools
    `TrecEval.get_map(trec_eval=False)`, which keeps the submitted order, cuts at depth 1000 and
    divides by the number of documents present in BOTH the gold standard and the run: a gold
    document for which nothing was submitted silently leaves the average. That rewards
    abstaining, so by default (`unranked_gold="zero"`) such a document scores 0 and stays in the
    mean; `unranked_gold="skip"` reproduces the official denominator, and `max_rank=1000` its
    depth. The script also lower-cases codes and drops predicted codes outside the task's
    valid-code list before ranks are counted; normalising and filtering `ranked` that way is
    the caller's job. `nan` when nothing is averaged.
    """
    if len(gold) != len(ranked):
        raise ValueError(
            f"gold has {len(gold)} documents but ranked has {len(ranked)}; they must align"
        )
    if unranked_gold not in ("zero", "skip"):
        raise ValueError(f"unranked_gold must be 'zero' or 'skip'; got {unranked_gold!r}")
    if max_rank is not None:
        _check_k(max_rank)
    precisions: list[float] = []
    for gold_codes, ranked_codes in zip(gold, ranked, strict=True):
        if isinstance(gold_codes, str) or isinstance(ranked_codes, str):
            raise ValueError("each document's codes must be a sequence of strings, not a string")
        if not set(gold_codes):
            continue
        if not ranked_codes and unranked_gold == "skip":
            continue
        precisions.append(average_precision(gold_codes, ranked_codes, max_rank))
    return float(np.mean(precisions)) if precisions else math.nan


def _map_over_relevance(relevant: BoolArray, order: IntArray, max_rank: int | None) -> float:
    """MAP of fixed rankings `order` (N, C) where `relevant` (N, C) marks what counts as a hit."""
    n_relevant = relevant.sum(axis=1)  # (N,)
    judged = n_relevant > 0
    if not judged.any():
        return math.nan
    depth = order.shape[1] if max_rank is None else min(max_rank, order.shape[1])
    hits = np.take_along_axis(relevant[judged], order[judged, :depth], axis=1)  # (N', depth)
    precision_at_rank = np.cumsum(hits, axis=1) / np.arange(1, depth + 1)  # (N', depth)
    # Divide by all relevant codes, ranked within the depth or not, as trec-style AP does.
    average_precisions = (precision_at_rank * hits).sum(axis=1) / n_relevant[judged]
    return float(np.mean(average_precisions))


def map_from_scores(
    y_true: npt.ArrayLike, y_score: npt.ArrayLike, max_rank: int | None = None
) -> float:
    """MAP of the full score ranking (every code ranked), over documents with a gold code.

    Equivalent to `mean_average_precision` on each document's codes sorted by score (ties by
    column index). Because every code is ranked, no gold document is ever unranked; this is an
    upper bound on the MAP of any thresholded or truncated submission drawn from the same scores.
    `max_rank` keeps only the top `max_rank` codes (1000 matches the official depth).
    """
    labels = as_label_matrix(y_true)
    scores = as_score_matrix(y_score, labels.shape)
    if max_rank is not None:
        _check_k(max_rank)
    return _map_over_relevance(labels, ranking_order(scores), max_rank)


# --------------------------------------------------------------------------------------------
# Set-based metrics
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PRF:
    """Micro-averaged precision, recall and F1 (one pool of document-code decisions)."""

    precision: float
    recall: float
    f1: float


@dataclass(frozen=True)
class MacroPRF:
    """Macro-averaged scores over `n_codes` code columns.

    `f1_mean` is the mean of per-code F1 (the usual "macro F1"); `f1_harmonic` is the harmonic
    mean of the macro precision and macro recall (CAML, Mullenbach et al. 2018). The harmonic
    mean is concave, so `f1_harmonic` >= `f1_mean` always (Jensen); never report one under the
    other's name.
    """

    precision: float
    recall: float
    f1_mean: float
    f1_harmonic: float
    n_codes: int


def _check_pair(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> tuple[BoolArray, BoolArray]:
    labels = as_label_matrix(y_true)
    decisions = as_label_matrix(y_pred, name="y_pred")
    if decisions.shape != labels.shape:
        raise ValueError(f"y_pred has shape {decisions.shape}, but y_true has {labels.shape}")
    return labels, decisions


def micro_prf(y_true: npt.ArrayLike, y_pred: npt.ArrayLike) -> PRF:
    """Micro P/R/F1 over all (document, code) decisions; 0/0 counts as 0."""
    labels, decisions = _check_pair(y_true, y_pred)
    true_positives = int(np.sum(labels & decisions))
    false_positives = int(np.sum(~labels & decisions))
    false_negatives = int(np.sum(labels & ~decisions))
    return PRF(
        precision=_ratio(true_positives, true_positives + false_positives),
        recall=_ratio(true_positives, true_positives + false_negatives),
        f1=f1_from_counts(true_positives, false_positives, false_negatives),
    )


def macro_prf(
    y_true: npt.ArrayLike, y_pred: npt.ArrayLike, columns: MacroColumns = "active"
) -> MacroPRF:
    """Macro P/R/F1 from per-code scores (each with 0/0 -> 0), in both F1 forms.

    `columns="active"` (default) averages over codes with at least one gold OR one predicted
    positive: codes the split never mentions and the model never predicts say nothing about the
    model, while a code predicted but never gold still counts (F1 0, a false-alarm penalty).
    `columns="all"` averages over every column, as CAML does; that drags scores towards 0 when
    the code list is much larger than the split. `nan` values when no column is active.
    """
    labels, decisions = _check_pair(y_true, y_pred)
    if columns not in ("active", "all"):
        raise ValueError(f"columns must be 'active' or 'all'; got {columns!r}")
    true_positives = np.sum(labels & decisions, axis=0)  # (C,)
    n_gold = labels.sum(axis=0)  # (C,)
    n_predicted = decisions.sum(axis=0)  # (C,)
    if columns == "active":
        kept = (n_gold > 0) | (n_predicted > 0)
    else:
        kept = np.ones(labels.shape[1], dtype=bool)
    n_codes = int(kept.sum())
    if n_codes == 0:
        return MacroPRF(math.nan, math.nan, math.nan, math.nan, 0)
    tp, gold, predicted = true_positives[kept], n_gold[kept], n_predicted[kept]
    # max(..., 1) turns 0/0 into 0/1 = 0, the module's convention, without division warnings.
    precision = tp / np.maximum(predicted, 1)
    recall = tp / np.maximum(gold, 1)
    f1 = 2 * tp / np.maximum(gold + predicted, 1)  # = 2TP / (2TP + FP + FN)
    macro_precision = float(precision.mean())
    macro_recall = float(recall.mean())
    return MacroPRF(
        precision=macro_precision,
        recall=macro_recall,
        f1_mean=float(f1.mean()),
        f1_harmonic=_ratio(2 * macro_precision * macro_recall, macro_precision + macro_recall),
        n_codes=n_codes,
    )


def macro_f1_mean(
    y_true: npt.ArrayLike, y_pred: npt.ArrayLike, columns: MacroColumns = "active"
) -> float:
    """Mean over codes of per-code F1 (see `macro_prf` for which codes)."""
    return macro_prf(y_true, y_pred, columns).f1_mean


def macro_f1_harmonic(
    y_true: npt.ArrayLike, y_pred: npt.ArrayLike, columns: MacroColumns = "active"
) -> float:
    """CAML's macro F1: harmonic mean of macro precision and macro recall."""
    return macro_prf(y_true, y_pred, columns).f1_harmonic


# --------------------------------------------------------------------------------------------
# ROC AUC
# --------------------------------------------------------------------------------------------


def _average_ranks(values: FloatArray) -> FloatArray:
    """1-based ranks of a 1-D array, tied values sharing the mean of their ranks."""
    _, inverse, counts = np.unique(values, return_inverse=True, return_counts=True)
    last_rank = np.cumsum(counts)  # rank of the last member of each tie group
    return (last_rank - (counts - 1) / 2.0)[inverse]


def _auc(labels: BoolArray, scores: FloatArray) -> float:
    """Mann-Whitney ROC AUC of 1-D arrays; a tie between a positive and a negative counts 1/2."""
    n_positive = int(labels.sum())
    n_negative = labels.size - n_positive
    if n_positive == 0 or n_negative == 0:
        return math.nan
    rank_sum = float(_average_ranks(scores)[labels].sum())
    return (rank_sum - n_positive * (n_positive + 1) / 2.0) / (n_positive * n_negative)


def micro_auc(y_true: npt.ArrayLike, y_score: npt.ArrayLike) -> float:
    """ROC AUC of all (document, code) pairs pooled; `nan` if the pool lacks either class."""
    labels = as_label_matrix(y_true)
    scores = as_score_matrix(y_score, labels.shape)
    return _auc(labels.ravel(), scores.ravel())


def macro_auc(y_true: npt.ArrayLike, y_score: npt.ArrayLike) -> float:
    """Mean per-code ROC AUC over codes with at least one positive AND one negative document.

    Other codes are skipped (their AUC is undefined); `nan` when no code qualifies.
    """
    labels = as_label_matrix(y_true)
    scores = as_score_matrix(y_score, labels.shape)
    n_positive = labels.sum(axis=0)  # (C,)
    scorable = np.flatnonzero((n_positive > 0) & (n_positive < labels.shape[0]))
    if scorable.size == 0:
        return math.nan
    return float(np.mean([_auc(labels[:, column], scores[:, column]) for column in scorable]))
