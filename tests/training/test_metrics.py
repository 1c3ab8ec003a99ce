"""Metrics against values worked out by hand on a 3-document x 4-code example."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from training.metric_report import FREQUENCY_BUCKETS, bucket_of, evaluate_all, metrics_by_bucket
from training.metrics import (
    K_VALUES,
    apply_thresholds,
    average_precision,
    macro_auc,
    macro_f1_harmonic,
    macro_f1_mean,
    macro_prf,
    map_from_scores,
    mean_average_precision,
    micro_auc,
    micro_prf,
    precision_at_k,
    ranking_order,
    recall_at_k,
)

# Codes (columns): A B C D.
#
#          gold      scores A    B    C    D     ranking (ties: lower column first)
# doc 0    A, C            0.9  0.8  0.3  0.1    A B C D
# doc 1    B               0.6  0.6  0.2  0.7    D A B C   (A and B tie at 0.6: A first)
# doc 2    A, B, D         0.5  0.1  0.4  0.7    D A C B
CODES = ["A", "B", "C", "D"]
Y_TRUE = np.array(
    [
        [1, 0, 1, 0],
        [0, 1, 0, 0],
        [1, 1, 0, 1],
    ],
    dtype=bool,
)
Y_SCORE = np.array(
    [
        [0.9, 0.8, 0.3, 0.1],
        [0.6, 0.6, 0.2, 0.7],
        [0.5, 0.1, 0.4, 0.7],
    ]
)
# Threshold 0.5 (score >= 0.5 is predicted):
#   doc 0 predicts A B    gold A C    -> TP A, FP B, FN C
#   doc 1 predicts A B D  gold B      -> TP B, FP A D
#   doc 2 predicts A D    gold A B D  -> TP A D, FN B
Y_PRED = Y_SCORE >= 0.5
# Training counts give one code per bucket: C unseen, B "1-2", D "3-10", A ">10".
TRAIN_COUNTS = np.array([50, 2, 0, 3])


def test_ranking_breaks_ties_by_column_index() -> None:
    assert ranking_order(Y_SCORE).tolist() == [[0, 1, 2, 3], [3, 0, 1, 2], [3, 0, 2, 1]]
    assert ranking_order(np.zeros((1, 4))).tolist() == [[0, 1, 2, 3]]


def test_precision_at_k_by_hand() -> None:
    # P@1: doc 0 A gold (1), doc 1 D not gold (0), doc 2 D gold (1) -> 2/3.
    assert precision_at_k(Y_TRUE, Y_SCORE, 1) == pytest.approx(2 / 3)
    # P@3: doc 0 {A,B,C} has A,C (2/3); doc 1 {D,A,B} has B (1/3); doc 2 {D,A,C} has D,A (2/3)
    # -> (2/3 + 1/3 + 2/3) / 3 = 5/9.
    assert precision_at_k(Y_TRUE, Y_SCORE, 3) == pytest.approx(5 / 9)
    # P@2 shows the tie rule: doc 1's top 2 is D, A (A beats B at equal score) -> 0 hits.
    # doc 0 {A,B} 1/2, doc 2 {D,A} 2/2 -> (1/2 + 0 + 1) / 3 = 1/2. With B first it would be 2/3.
    assert precision_at_k(Y_TRUE, Y_SCORE, 2) == pytest.approx(1 / 2)
    # k beyond the number of codes still divides by k: 6 gold codes / (3 docs * 15) = 6/45.
    assert precision_at_k(Y_TRUE, Y_SCORE, 15) == pytest.approx(6 / 45)


def test_recall_at_k_by_hand() -> None:
    # R@3: doc 0 2/2, doc 1 1/1, doc 2 2/3 -> (1 + 1 + 2/3) / 3 = 8/9.
    assert recall_at_k(Y_TRUE, Y_SCORE, 3) == pytest.approx(8 / 9)
    # R@1: doc 0 1/2, doc 1 0/1, doc 2 1/3 -> (1/2 + 0 + 1/3) / 3 = 5/18.
    assert recall_at_k(Y_TRUE, Y_SCORE, 1) == pytest.approx(5 / 18)


def test_micro_prf_by_hand() -> None:
    # TP = 1 + 1 + 2 = 4, FP = 1 + 2 + 0 = 3, FN = 1 + 0 + 1 = 2.
    micro = micro_prf(Y_TRUE, Y_PRED)
    assert micro.precision == pytest.approx(4 / 7)
    assert micro.recall == pytest.approx(4 / 6)
    assert micro.f1 == pytest.approx(2 * 4 / (2 * 4 + 3 + 2))  # 8/13


def test_macro_forms_differ_by_hand() -> None:
    # Per code (TP, FP, FN) -> P, R, F1:
    #   A (2, 1, 0) -> 2/3, 1,   4/5
    #   B (1, 1, 1) -> 1/2, 1/2, 1/2
    #   C (0, 0, 1) -> 0,   0,   0     (0/0 precision counts as 0)
    #   D (1, 1, 0) -> 1/2, 1,   2/3
    # macro P = (2/3 + 1/2 + 0 + 1/2) / 4 = 5/12; macro R = (1 + 1/2 + 0 + 1) / 4 = 5/8.
    # mean of F1     = (4/5 + 1/2 + 0 + 2/3) / 4 = 59/120 ~ 0.4917
    # harmonic (CAML) = 2 * 5/12 * 5/8 / (5/12 + 5/8) = 1/2
    macro = macro_prf(Y_TRUE, Y_PRED)
    assert macro.n_codes == 4
    assert macro.precision == pytest.approx(5 / 12)
    assert macro.recall == pytest.approx(5 / 8)
    assert macro.f1_mean == pytest.approx(59 / 120)
    assert macro.f1_harmonic == pytest.approx(1 / 2)
    assert macro_f1_mean(Y_TRUE, Y_PRED) == pytest.approx(59 / 120)
    assert macro_f1_harmonic(Y_TRUE, Y_PRED) == pytest.approx(1 / 2)
    assert macro.f1_harmonic > macro.f1_mean


def test_macro_active_codes_versus_all_columns() -> None:
    # A fifth code E, never gold and never predicted, is ignored by "active" and averaged as
    # zeros by "all": f1_mean becomes (59/30) / 5 and macro P (5/3) / 5.
    y_true = np.hstack([Y_TRUE, np.zeros((3, 1), dtype=bool)])
    y_pred = np.hstack([Y_PRED, np.zeros((3, 1), dtype=bool)])
    active = macro_prf(y_true, y_pred)
    every = macro_prf(y_true, y_pred, columns="all")
    assert active.n_codes == 4
    assert active.f1_mean == pytest.approx(59 / 120)
    assert every.n_codes == 5
    assert every.f1_mean == pytest.approx(59 / 150)
    assert every.precision == pytest.approx(1 / 3)
    # A code predicted but never gold is active and scores F1 0 (a false-alarm penalty).
    y_pred[0, 4] = True
    assert macro_prf(y_true, y_pred).n_codes == 5
    assert macro_prf(y_true, y_pred).f1_mean == pytest.approx(59 / 150)


def test_auc_by_hand_with_ties() -> None:
    # Per code, (positive, negative) pairs won, a tie counting 1/2:
    #   A pos {0.9, 0.5} neg {0.6}:       1 + 0       -> 1/2
    #   B pos {0.6, 0.1} neg {0.8}:       0 + 0       -> 0
    #   C pos {0.3}      neg {0.2, 0.4}:  1 + 0       -> 1/2
    #   D pos {0.7}      neg {0.1, 0.7}:  1 + 1/2     -> 3/4
    # macro = (1/2 + 0 + 1/2 + 3/4) / 4 = 7/16.
    assert macro_auc(Y_TRUE, Y_SCORE) == pytest.approx(7 / 16)
    # Micro: 6 positives x 6 negatives. Negatives: 0.8 0.1 0.6 0.2 0.7 0.4. Pairs won per
    # positive: 0.9 -> 6, 0.3 -> 2, 0.6 -> 3 + 1/2, 0.5 -> 3, 0.1 -> 1/2, 0.7 -> 4 + 1/2;
    # total 19.5 / 36 = 13/24.
    assert micro_auc(Y_TRUE, Y_SCORE) == pytest.approx(13 / 24)
    assert micro_auc(Y_TRUE, Y_SCORE) == pytest.approx(
        roc_auc_score(Y_TRUE.ravel(), Y_SCORE.ravel())
    )
    assert macro_auc(Y_TRUE, Y_SCORE) == pytest.approx(
        roc_auc_score(Y_TRUE, Y_SCORE, average="macro")
    )


def test_auc_matches_sklearn_on_random_tied_scores() -> None:
    generator = np.random.default_rng(0)
    y_true = generator.random((40, 6)) < 0.3
    y_score = np.round(generator.random((40, 6)), 1)  # coarse values: many ties
    assert micro_auc(y_true, y_score) == pytest.approx(
        roc_auc_score(y_true.ravel(), y_score.ravel())
    )
    assert macro_auc(y_true, y_score) == pytest.approx(roc_auc_score(y_true, y_score))


def test_macro_auc_skips_codes_without_both_classes() -> None:
    # Column 1 is all positive and column 2 all negative: only column 0 (AUC 1) counts.
    y_true = np.array([[1, 1, 0], [0, 1, 0]])
    y_score = np.array([[0.9, 0.1, 0.5], [0.2, 0.3, 0.5]])
    assert macro_auc(y_true, y_score) == pytest.approx(1.0)
    assert math.isnan(macro_auc(np.ones((2, 2)), y_score[:, :2]))


def test_map_from_scores_by_hand_with_a_tie() -> None:
    # doc 0 ranks A B C D, gold A C: (1/1 + 2/3) / 2 = 5/6.
    # doc 1 ranks D A B C, gold B at rank 3 (tie A/B broken by column): (1/3) / 1 = 1/3.
    # doc 2 ranks D A C B, gold A B D: (1/1 + 2/2 + 3/4) / 3 = 11/12.
    # MAP = (5/6 + 1/3 + 11/12) / 3 = 25/36. (Breaking the tie B-first would give doc 1 1/2.)
    assert map_from_scores(Y_TRUE, Y_SCORE) == pytest.approx(25 / 36)
    # Cut at rank 2: doc 0 (1/1)/2, doc 1 0, doc 2 (1 + 1)/3 -> (1/2 + 0 + 2/3) / 3 = 7/18.
    assert map_from_scores(Y_TRUE, Y_SCORE, max_rank=2) == pytest.approx(7 / 18)


def test_mean_average_precision_on_code_lists() -> None:
    gold = [["A", "C"], ["B"], ["A", "B", "D"], ["E"], []]
    ranked = [["A", "B", "C", "D"], ["D", "A", "B", "C"], ["D", "A", "C", "B"], [], ["A"]]
    # The first three are the hand example (5/6, 1/3, 11/12). Document 4 has gold E but no
    # predictions: AP 0 and it stays in the mean. Document 5 has no gold: skipped.
    assert mean_average_precision(gold, ranked) == pytest.approx((25 / 12) / 4)
    # The official trectools denominator only counts documents present in the run.
    assert mean_average_precision(gold, ranked, unranked_gold="skip") == pytest.approx(25 / 36)
    # Agrees with the array form on the same rankings.
    columns = [[CODES[c] for c in row] for row in ranking_order(Y_SCORE)]
    as_lists = [[CODES[c] for c in np.flatnonzero(row)] for row in Y_TRUE]
    assert mean_average_precision(as_lists, columns) == pytest.approx(
        map_from_scores(Y_TRUE, Y_SCORE)
    )


def test_average_precision_details() -> None:
    # A repeated code keeps its first rank: A 1, C 2 -> (1 + 1) / 2 = 1.
    assert average_precision(["A", "C"], ["A", "A", "C"]) == pytest.approx(1.0)
    # A gold code never ranked still counts in the divisor: (1/1) / 2.
    assert average_precision(["A", "Z"], ["A", "B"]) == pytest.approx(1 / 2)
    assert average_precision(["A"], []) == 0.0
    assert math.isnan(average_precision([], ["A"]))
    assert math.isnan(mean_average_precision([[]], [["A"]]))
    with pytest.raises(ValueError, match="align"):
        mean_average_precision([["A"]], [])


def test_empty_rows_and_columns() -> None:
    # A fourth document without gold codes: P@k counts it (0 hits), R@k and MAP skip it.
    y_true = np.vstack([Y_TRUE, np.zeros((1, 4), dtype=bool)])
    y_score = np.vstack([Y_SCORE, np.full((1, 4), 0.9)])
    assert precision_at_k(y_true, y_score, 1) == pytest.approx(2 / 4)
    assert recall_at_k(y_true, y_score, 3) == pytest.approx(8 / 9)
    assert map_from_scores(y_true, y_score) == pytest.approx(25 / 36)
    # Nothing predicted anywhere: micro precision is 0/0 -> 0, not an error.
    nothing = np.zeros_like(Y_TRUE)
    assert micro_prf(Y_TRUE, nothing).precision == 0.0
    assert micro_prf(Y_TRUE, nothing).f1 == 0.0
    # No gold at all: recall-type metrics are undefined (nan), precision-type are 0.
    no_gold = np.zeros((2, 3), dtype=bool)
    scores = np.array([[0.1, 0.2, 0.3], [0.3, 0.2, 0.1]])
    assert precision_at_k(no_gold, scores, 1) == 0.0
    assert math.isnan(recall_at_k(no_gold, scores, 1))
    assert math.isnan(map_from_scores(no_gold, scores))
    assert math.isnan(micro_auc(no_gold, scores))
    assert math.isnan(macro_prf(no_gold, no_gold).f1_mean)


@pytest.mark.parametrize(
    ("y_true", "y_score", "message"),
    [
        (np.zeros((0, 4)), np.zeros((0, 4)), "N = 0"),
        (np.zeros((2, 0)), np.zeros((2, 0)), "C = 0"),
        (np.zeros(4), np.zeros(4), "2-D"),
        (np.zeros((2, 4)), np.zeros((2, 3)), "shape"),
        (np.full((2, 4), 2), np.zeros((2, 4)), "0 and 1"),
        (np.zeros((2, 4)), np.full((2, 4), np.nan), "NaN"),
    ],
)
def test_malformed_input_raises(y_true: np.ndarray, y_score: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        precision_at_k(y_true, y_score, 1)


def test_bad_k_raises() -> None:
    with pytest.raises(ValueError, match="positive integer"):
        precision_at_k(Y_TRUE, Y_SCORE, 0)


def test_bucket_boundaries() -> None:
    expected = {0: "unseen", 1: "1-2", 2: "1-2", 3: "3-10", 10: "3-10", 11: ">10"}
    assert {count: bucket_of(count) for count in expected} == expected
    with pytest.raises(ValueError):
        bucket_of(-1)
    # The array form used by metrics_by_bucket puts the same counts in the same buckets.
    counts = np.array([0, 1, 2, 3, 10, 11])
    table = metrics_by_bucket(
        np.ones((1, 6), dtype=bool), np.zeros((1, 6)), np.zeros((1, 6), dtype=bool), counts
    )
    assert list(table) == list(FREQUENCY_BUCKETS)
    assert [table[bucket].n_codes for bucket in FREQUENCY_BUCKETS] == [1, 2, 2, 1]


def test_metrics_by_bucket_by_hand() -> None:
    table = metrics_by_bucket(Y_TRUE, Y_SCORE, Y_PRED, TRAIN_COUNTS)
    # unseen = {C}: gold in doc 0, never predicted -> micro 0/0, 0, 0. Only C relevant:
    # doc 0 ranks it 3rd -> AP 1/3. With 4 codes every code is in the top 15.
    unseen = table["unseen"]
    assert (unseen.n_codes, unseen.n_codes_in_gold, unseen.n_gold) == (1, 1, 1)
    assert (unseen.micro_precision, unseen.micro_recall, unseen.micro_f1) == (0.0, 0.0, 0.0)
    assert unseen.macro_f1_mean == 0.0
    assert unseen.recall_at_15 == 1.0
    assert unseen.map == pytest.approx(1 / 3)
    # "1-2" = {B}: TP 1, FP 1, FN 1 -> 1/2 each. B is 3rd in doc 1, 4th in doc 2:
    # MAP (1/3 + 1/4) / 2 = 7/24.
    rare = table["1-2"]
    assert rare.micro_f1 == pytest.approx(1 / 2)
    assert rare.map == pytest.approx(7 / 24)
    # "3-10" = {D}: TP 1, FP 1 -> P 1/2, R 1, F1 2/3; D first in doc 2 -> MAP 1.
    assert table["3-10"].micro_f1 == pytest.approx(2 / 3)
    assert table["3-10"].map == pytest.approx(1.0)
    # ">10" = {A}: P 2/3, R 1, F1 4/5; A 1st in doc 0 (AP 1), 2nd in doc 2 (AP 1/2) -> 3/4.
    frequent = table[">10"]
    assert frequent.micro_precision == pytest.approx(2 / 3)
    assert frequent.macro_f1_mean == pytest.approx(4 / 5)
    assert frequent.map == pytest.approx(3 / 4)


def test_bucket_recall_at_15_uses_the_full_ranking() -> None:
    # One document, 20 codes ranked by column; gold at ranks 15 and 16 -> 1 of 2 in the top 15.
    scores = 1.0 - np.arange(20)[None, :] / 100.0
    y_true = np.zeros((1, 20), dtype=bool)
    y_true[0, [14, 15]] = True
    counts = np.zeros(20, dtype=int)
    table = metrics_by_bucket(y_true, scores, np.zeros_like(y_true), counts)
    assert table["unseen"].recall_at_15 == pytest.approx(1 / 2)
    assert table["1-2"].n_codes == 0
    assert math.isnan(table["1-2"].map)


def test_evaluate_all_report() -> None:
    report = evaluate_all(Y_TRUE, Y_SCORE, 0.5, TRAIN_COUNTS, CODES)
    flat = report.as_dict()
    assert flat["precision_at_1"] == pytest.approx(2 / 3)
    assert flat["recall_at_3"] == pytest.approx(8 / 9)
    assert flat["micro_f1"] == pytest.approx(8 / 13)
    assert flat["macro_f1_mean"] == pytest.approx(59 / 120)
    assert flat["macro_f1_harmonic"] == pytest.approx(1 / 2)
    assert flat["macro_auc"] == pytest.approx(7 / 16)
    assert flat["map"] == pytest.approx(25 / 36)
    assert flat["predicted_per_document"] == pytest.approx(7 / 3)
    assert flat["bucket.1-2.map"] == pytest.approx(7 / 24)
    assert all(f"precision_at_{k}" in flat and f"recall_at_{k}" in flat for k in K_VALUES)
    assert all(isinstance(value, float) for value in flat.values())
    names = [name for name, _ in report.rows()]
    assert names[:2] == ["documents", "codes"] and "bucket.1-2.map" not in names
    assert [bucket for bucket, _ in report.bucket_rows()] == list(FREQUENCY_BUCKETS)
    # The "1-2" row (code B) as in test_metrics_by_bucket_by_hand: 1 code, in gold, 2 gold
    # pairs, micro P/R/F1 and macro F1 1/2, both gold B in the top 15, MAP 7/24.
    b_row = dict(report.bucket_rows())["1-2"]
    assert [b_row[name] for name in ("n_codes", "n_codes_in_gold", "n_gold")] == [1, 1, 2]
    assert [b_row[name] for name in ("micro_precision", "micro_recall", "micro_f1")] == [0.5] * 3
    assert b_row["macro_f1_mean"] == 0.5 and b_row["recall_at_15"] == 1.0
    assert b_row["map"] == pytest.approx(7 / 24)
    # Per-code thresholds: raising C's and D's cutoffs to 1 removes D's two predictions.
    per_code = evaluate_all(Y_TRUE, Y_SCORE, np.array([0.5, 0.5, 1.0, 1.0]), TRAIN_COUNTS, CODES)
    assert per_code.micro.precision == pytest.approx(3 / 5)


def test_evaluate_all_rejects_misaligned_inputs() -> None:
    with pytest.raises(ValueError, match="code list"):
        evaluate_all(Y_TRUE, Y_SCORE, 0.5, TRAIN_COUNTS, CODES[:3])
    with pytest.raises(ValueError, match="train_counts"):
        evaluate_all(Y_TRUE, Y_SCORE, 0.5, TRAIN_COUNTS[:3], CODES)
    with pytest.raises(ValueError, match="thresholds"):
        apply_thresholds(Y_SCORE, np.array([0.5, 0.5]))


def test_official_map_cuts_the_ranking_at_depth_1000() -> None:
    from training.metric_report import evaluate_all

    n_codes = 1200
    scores = np.linspace(1.0, 0.0, n_codes, dtype=np.float32)[None, :]  # code i ranked i+1
    gold = np.zeros((1, n_codes), dtype=bool)
    gold[0, [0, 1100]] = True
    report = evaluate_all(gold, scores, 0.5, np.ones(n_codes), [str(i) for i in range(n_codes)])
    assert report.map == pytest.approx((1 / 1 + 2 / 1101) / 2)
    assert report.map_official == pytest.approx(0.5)  # rank 1101 is beyond the official depth
