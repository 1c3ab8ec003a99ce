"""The metric report of one split: every metric of training/metrics.py, overall and by how often
a code occurs in training (buckets "unseen", "1-2", "3-10", ">10"). It is what `plant-icd
evaluate` prints and what a bundle stores as its dev metrics.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import numpy.typing as npt

from training.metrics import (
    K_VALUES,
    PRF,
    BoolArray,
    IntArray,
    MacroPRF,
    _check_pair,
    _map_over_relevance,
    _precision_at_k,
    _recall_at_k,
    apply_thresholds,
    as_label_matrix,
    as_score_matrix,
    macro_auc,
    macro_prf,
    micro_auc,
    micro_prf,
    ranking_order,
)

FREQUENCY_BUCKETS: tuple[str, ...] = ("unseen", "1-2", "3-10", ">10")
BUCKET_TOP_K = 15


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
