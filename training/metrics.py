"""Evaluation metrics for multi-label ICD coding: ranking (P@k, R@k, MAP), set-based (micro/macro
P/R/F1), ROC AUC and training-frequency buckets, over dense (documents, codes) arrays.

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
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

K_VALUES: tuple[int, ...] = (1, 3, 5, 8, 15)
FREQUENCY_BUCKETS: tuple[str, ...] = ("unseen", "1-2", "3-10", ">10")
BUCKET_TOP_K = 15

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


# --------------------------------------------------------------------------------------------
# Training-frequency buckets
# --------------------------------------------------------------------------------------------


def bucket_of(count: int) -> str:
    """Bucket of a code seen `count` times in training: 0 "unseen", 1-2, 3-10, >10."""
    if isinstance(count, bool) or not isinstance(count, int | np.integer) or count < 0:
        raise ValueError(f"a training count must be a non-negative integer; got {count!r}")
    if count == 0:
        return "unseen"
    if count <= 2:
        return "1-2"
    if count <= 10:
        return "3-10"
    return ">10"


def _bucket_indices(train_counts: npt.ArrayLike, n_codes: int) -> IntArray:
    """Index into FREQUENCY_BUCKETS per code column: (C,)."""
    counts = np.asarray(train_counts)
    if counts.shape != (n_codes,):
        raise ValueError(f"train_counts must have shape ({n_codes},); got {counts.shape}")
    if not np.issubdtype(counts.dtype, np.number) or not np.all(np.mod(counts, 1) == 0):
        raise ValueError("train_counts must hold whole numbers of training documents")
    if (counts < 0).any():
        raise ValueError("train_counts must be non-negative")
    # Upper bounds 0, 2, 10 map counts to 0 unseen, 1 "1-2", 2 "3-10", 3 ">10".
    return np.searchsorted(np.array([0, 2, 10]), counts, side="left").astype(np.int64)


@dataclass(frozen=True)
class BucketMetrics:
    """Scores restricted to the codes of one training-frequency bucket.

    n_codes: code columns in the bucket. n_codes_in_gold: of those, codes with >= 1 gold
    document in this split. n_gold: gold (document, code) pairs in the bucket.
    micro_precision/recall/f1: `micro_prf` over the bucket's columns only.
    macro_f1_mean: `macro_prf(...).f1_mean` over the bucket's columns ("active" codes).
    recall_at_15: of the gold (document, code) pairs in the bucket, the fraction whose code is
    in the document's top 15 over the FULL ranking (all codes compete). Pooled over pairs, not
    averaged per document, so documents with a single rare code do not dominate.
    map: MAP over the full rankings where only the bucket's gold codes count as relevant,
    averaged over documents with >= 1 such code.
    P@k is not reported: its divisor k counts slots filled by codes of every bucket, so a
    per-bucket P@k mixes buckets. `nan` where a value is undefined (no gold in the bucket).
    """

    n_codes: int
    n_codes_in_gold: int
    n_gold: int
    micro_precision: float
    micro_recall: float
    micro_f1: float
    macro_f1_mean: float
    recall_at_15: float
    map: float


def metrics_by_bucket(
    y_true: npt.ArrayLike,
    y_score: npt.ArrayLike,
    y_pred: npt.ArrayLike,
    train_counts: npt.ArrayLike,
) -> dict[str, BucketMetrics]:
    """`BucketMetrics` per frequency bucket, keyed and ordered as FREQUENCY_BUCKETS.

    `train_counts` (C,) is each code's number of training documents; `y_pred` the thresholded
    decisions. Every bucket appears, empty ones with n_codes 0 and `nan` scores.
    """
    labels = as_label_matrix(y_true)
    scores = as_score_matrix(y_score, labels.shape)
    decisions = _check_pair(labels, y_pred)[1]
    return _metrics_by_bucket(labels, ranking_order(scores), decisions, train_counts)


def _metrics_by_bucket(
    labels: BoolArray,
    order: IntArray,
    decisions: BoolArray,
    train_counts: npt.ArrayLike,
    rank_depth: int | None = None,
) -> dict[str, BucketMetrics]:
    bucket_per_code = _bucket_indices(train_counts, labels.shape[1])  # (C,)
    # in_top_k[d, c]: code c is among document d's top 15 over all codes.
    in_top_k = np.zeros(labels.shape, dtype=bool)
    np.put_along_axis(in_top_k, order[:, :BUCKET_TOP_K], True, axis=1)

    table: dict[str, BucketMetrics] = {}
    for index, bucket in enumerate(FREQUENCY_BUCKETS):
        columns = bucket_per_code == index  # (C,)
        n_codes = int(columns.sum())
        if n_codes == 0:
            table[bucket] = BucketMetrics(
                n_codes=0,
                n_codes_in_gold=0,
                n_gold=0,
                micro_precision=math.nan,
                micro_recall=math.nan,
                micro_f1=math.nan,
                macro_f1_mean=math.nan,
                recall_at_15=math.nan,
                map=math.nan,
            )
            continue
        gold_in_bucket = labels[:, columns]
        n_gold = int(gold_in_bucket.sum())
        micro = micro_prf(gold_in_bucket, decisions[:, columns])
        relevant = labels & columns  # (N, C): gold codes of this bucket only
        table[bucket] = BucketMetrics(
            n_codes=n_codes,
            n_codes_in_gold=int(gold_in_bucket.any(axis=0).sum()),
            n_gold=n_gold,
            micro_precision=micro.precision,
            micro_recall=micro.recall,
            micro_f1=micro.f1,
            macro_f1_mean=macro_prf(gold_in_bucket, decisions[:, columns]).f1_mean,
            recall_at_15=(float(np.sum(relevant & in_top_k)) / n_gold if n_gold else math.nan),
            map=_map_over_relevance(relevant, order, rank_depth),
        )
    return table


# --------------------------------------------------------------------------------------------
# The full report the CLI prints and the bundle stores
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricReport:
    """Every metric for one split; `as_dict()` is flat (name -> float) for JSON and logs."""

    n_documents: int
    n_codes: int
    n_documents_without_gold: int
    predicted_per_document: float
    precision_at: Mapping[int, float]
    recall_at: Mapping[int, float]
    micro: PRF
    macro: MacroPRF
    macro_all_codes: MacroPRF
    micro_auc: float
    macro_auc: float
    map: float
    buckets: Mapping[str, BucketMetrics] = field(default_factory=dict)
    # The official CodiEsp script's MAP: ranking cut at depth 1,000, notes without any ranked
    # code dropped (every note here ranks every code, so none is dropped).
    map_official: float = math.nan

    def rows(self) -> list[tuple[str, float]]:
        """Headline (name, value) pairs in display order, without the bucket table."""
        rows: list[tuple[str, float]] = [
            ("documents", float(self.n_documents)),
            ("codes", float(self.n_codes)),
            ("documents_without_gold", float(self.n_documents_without_gold)),
            ("predicted_per_document", self.predicted_per_document),
        ]
        rows += [(f"precision_at_{k}", value) for k, value in self.precision_at.items()]
        rows += [(f"recall_at_{k}", value) for k, value in self.recall_at.items()]
        rows += [
            ("micro_precision", self.micro.precision),
            ("micro_recall", self.micro.recall),
            ("micro_f1", self.micro.f1),
            ("macro_codes", float(self.macro.n_codes)),
            ("macro_precision", self.macro.precision),
            ("macro_recall", self.macro.recall),
            ("macro_f1_mean", self.macro.f1_mean),
            ("macro_f1_harmonic", self.macro.f1_harmonic),
            ("macro_f1_mean_all_codes", self.macro_all_codes.f1_mean),
            ("macro_f1_harmonic_all_codes", self.macro_all_codes.f1_harmonic),
            ("micro_auc", self.micro_auc),
            ("macro_auc", self.macro_auc),
            ("map", self.map),
            ("map_official", self.map_official),
        ]
        return rows

    def bucket_rows(self) -> list[tuple[str, dict[str, float]]]:
        """(bucket, {metric: value}) in FREQUENCY_BUCKETS order, for a table."""
        return [
            (bucket, {name: float(value) for name, value in asdict(metrics).items()})
            for bucket, metrics in self.buckets.items()
        ]

    def as_dict(self) -> dict[str, float]:
        """Flat name -> float: the `rows()` plus `bucket.<bucket>.<metric>` entries."""
        flat = dict(self.rows())
        for bucket, values in self.bucket_rows():
            for name, value in values.items():
                flat[f"bucket.{bucket}.{name}"] = value
        return flat


OFFICIAL_DEPTH = 1000  # trectools' default, as the CodiEsp script calls it


def evaluate_all(
    y_true: npt.ArrayLike,
    y_score: npt.ArrayLike,
    thresholds: float | npt.ArrayLike,
    train_counts: npt.ArrayLike,
    codes: Sequence[str],
    rank_depth: int | None = None,
) -> MetricReport:
    """Compute every metric of this module for one split.

    `thresholds` is a scalar or (C,) array (see `apply_thresholds`); `train_counts` (C,) gives
    each code's training-document count for the buckets; `codes` is the column order and is
    only checked against the arrays' width, so a misaligned code list fails loudly.
    `rank_depth` cuts the ranking that MAP reads: evaluation passes the number of codes the model
    can predict, so gold codes outside its label space (scored 0, ranked last) count as never
    ranked instead of earning precision at the tail.
    """
    labels = as_label_matrix(y_true)
    scores = as_score_matrix(y_score, labels.shape)
    if len(codes) != labels.shape[1]:
        raise ValueError(
            f"{len(codes)} codes given for {labels.shape[1]} columns; the code list must match"
        )
    decisions = apply_thresholds(scores, thresholds)
    order = ranking_order(scores)  # (N, C), sorted once for every ranking metric
    return MetricReport(
        n_documents=labels.shape[0],
        n_codes=labels.shape[1],
        n_documents_without_gold=int((~labels.any(axis=1)).sum()),
        predicted_per_document=float(decisions.sum(axis=1).mean()),
        precision_at={k: _precision_at_k(labels, order, k) for k in K_VALUES},
        recall_at={k: _recall_at_k(labels, order, k) for k in K_VALUES},
        micro=micro_prf(labels, decisions),
        macro=macro_prf(labels, decisions, "active"),
        macro_all_codes=macro_prf(labels, decisions, "all"),
        micro_auc=micro_auc(labels, scores),
        macro_auc=macro_auc(labels, scores),
        map=_map_over_relevance(labels, order, rank_depth),
        buckets=_metrics_by_bucket(labels, order, decisions, train_counts, rank_depth),
        map_official=_map_over_relevance(
            labels, order, min(OFFICIAL_DEPTH, rank_depth or labels.shape[1])
        ),
    )
