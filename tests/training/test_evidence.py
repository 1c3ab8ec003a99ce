"""The CodiEsp-X evidence metric on hand-made cases, with figures counted by hand."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.prediction import CodePrediction, Highlight
from training.corpora.base import EvidenceReference
from training.corpora.errors import CorpusFormatError
from training.evidence import (
    CodeEvidence,
    hit_at_one,
    label_of_code,
    meets_x_rule,
    overlaps,
    predicted_evidence,
    read_x_tsv,
    write_x_tsv,
    x_scores,
)

# --- the rule ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("span", "found"),
    [
        ((100, 120), True),  # exactly the reference
        ((90, 130), True),  # 10 characters of slack on each side
        ((89, 120), False),  # starts 11 before
        ((100, 131), False),  # ends 11 after
        ((101, 120), False),  # starts inside: cuts the reference
        ((100, 119), False),  # ends inside
        ((105, 115), False),  # inside the reference: overlaps, but too short
        ((121, 125), False),  # after it
        ((92, 99), False),  # within 10 before it, but never touches it
    ],
)
def test_rule_needs_the_span_to_contain_the_reference_within_ten(
    span: tuple[int, int], found: bool
) -> None:
    assert meets_x_rule(span, (100, 120)) is found


def test_overlap_is_sharing_a_character() -> None:
    assert overlaps((105, 115), (100, 120))
    assert overlaps((90, 101), (100, 120))
    assert not overlaps((90, 100), (100, 120))  # [start, end): touching is not overlapping
    assert not overlaps((120, 130), (100, 120))


# --- scores ------------------------------------------------------------------------------------

GOLD = [
    # Note A: a diagnosis with two references (either one is enough) ...
    EvidenceReference("A", "D", "R50.9", ((10, 16),), "fiebre"),
    EvidenceReference("A", "D", "R50.9", ((200, 206),), "fiebre"),
    # ... a discontinuous diagnosis: the rule reads it as 40..90 ...
    EvidenceReference("A", "D", "N28.89", ((40, 48), (80, 90)), "ectasia pielocalicial"),
    # ... and a procedure.
    EvidenceReference("A", "P", "BT41ZZZ", ((300, 316),), "ecografía renal"),
    # Note B: one diagnosis whose parts are written out of text order (spans 500..560).
    EvidenceReference("B", "D", "Q62.11", ((550, 560), (500, 510)), "unión estenosis"),
]


def test_scores_per_label_and_combined() -> None:
    predictions = [
        CodeEvidence("A", "D", "R50.9", ((300, 310), (198, 210))),  # second span meets ref 2
        CodeEvidence("A", "D", "N28.89", ((40, 60),)),  # only the first part: not found
        CodeEvidence("A", "D", "I10", ((0, 5),)),  # not gold
        CodeEvidence("A", "P", "BT41ZZZ", ((295, 320),)),  # found
        CodeEvidence("B", "D", "Q62.11", ((495, 565),)),  # found: 500..560 with slack
        CodeEvidence("B", "D", "R69", ()),  # predicted without evidence: counts, never found
    ]

    scores = x_scores(predictions, GOLD)

    diagnoses, procedures, combined = scores["D"], scores["P"], scores["DP"]
    assert (diagnoses.predicted, diagnoses.gold, diagnoses.found) == (5, 3, 2)
    assert diagnoses.precision == pytest.approx(2 / 5)
    assert diagnoses.recall == pytest.approx(2 / 3)
    assert diagnoses.f1 == pytest.approx(2 * 0.4 * (2 / 3) / (0.4 + 2 / 3))
    assert (procedures.predicted, procedures.gold, procedures.found) == (1, 1, 1)
    assert procedures.f1 == pytest.approx(1.0)
    assert (combined.predicted, combined.gold, combined.found) == (6, 4, 3)
    assert combined.precision == pytest.approx(0.5)
    assert combined.recall == pytest.approx(0.75)
    assert combined.f1 == pytest.approx(0.6)


def test_the_whole_discontinuous_reference_is_needed() -> None:
    covering = [CodeEvidence("A", "D", "N28.89", ((35, 95),))]
    assert x_scores(covering, GOLD)["D"].found == 1
    # Both parts marked separately: neither span contains 40..90.
    separate = [CodeEvidence("A", "D", "N28.89", ((40, 48), (80, 90)))]
    assert x_scores(separate, GOLD)["D"].found == 0


def test_a_pair_predicted_twice_counts_once_and_a_wrong_label_never_matches() -> None:
    predictions = [
        CodeEvidence("A", "D", "R50.9", ((0, 5),)),
        CodeEvidence("A", "D", "R50.9", ((10, 16),)),
        # The right offsets under the procedure label are another pair altogether.
        CodeEvidence("A", "P", "R50.9", ((10, 16),)),
    ]
    scores = x_scores(predictions, GOLD)
    assert (scores["D"].predicted, scores["D"].found) == (1, 1)
    assert (scores["P"].predicted, scores["P"].found) == (1, 0)


def test_no_predictions_or_no_gold_score_zero_without_dividing_by_zero() -> None:
    assert x_scores([], GOLD)["DP"].f1 == 0.0
    empty = x_scores([CodeEvidence("A", "D", "R50.9", ((10, 16),))], [])["DP"]
    assert (empty.precision, empty.recall, empty.f1) == (0.0, 0.0, 0.0)


def test_hit_at_one_reads_only_the_first_span_of_correct_codes() -> None:
    predictions = [
        # First span overlaps reference 1 (10..16) but is too short; the second would meet it.
        CodeEvidence("A", "D", "R50.9", ((12, 16), (10, 16))),
        CodeEvidence("A", "D", "N28.89", ((35, 95),)),  # first span meets the rule
        CodeEvidence("A", "D", "I10", ((10, 16),)),  # not gold: not in the denominator
        CodeEvidence("A", "P", "BT41ZZZ", ((0, 5),)),  # first span misses entirely
        CodeEvidence("B", "D", "Q62.11", ()),  # correct, but no evidence: a miss
    ]

    hits = hit_at_one(predictions, GOLD)

    diagnoses = hits["D"]
    assert (diagnoses.correct_codes, diagnoses.rule_hits, diagnoses.overlap_hits) == (3, 1, 2)
    assert diagnoses.rule_rate == pytest.approx(1 / 3)
    assert diagnoses.overlap_rate == pytest.approx(2 / 3)
    assert (hits["P"].correct_codes, hits["P"].rule_hits, hits["P"].overlap_hits) == (1, 0, 0)
    assert (hits["DP"].correct_codes, hits["DP"].rule_hits, hits["DP"].overlap_hits) == (4, 1, 2)
    assert hit_at_one([], GOLD)["DP"].rule_rate == 0.0


# --- the X TSV ---------------------------------------------------------------------------------


def test_x_tsv_round_trip_keeps_span_order(tmp_path: Path) -> None:
    predictions = [
        CodeEvidence("A", "D", "R50.9", ((198, 210), (10, 16))),
        CodeEvidence("A", "P", "BT41ZZZ", ((295, 320),)),
        CodeEvidence("B", "D", "R69", ()),  # no span: no row
    ]
    path = tmp_path / "x" / "predictions_x.tsv"

    assert write_x_tsv(predictions, path) == 3

    assert path.read_text(encoding="utf-8").splitlines() == [
        "A\t198 210\tDIAGNOSTICO\tr50.9",
        "A\t10 16\tDIAGNOSTICO\tr50.9",
        "A\t295 320\tPROCEDIMIENTO\tbt41zzz",
    ]
    assert read_x_tsv(path) == predictions[:2]
    assert x_scores(read_x_tsv(path), GOLD)["DP"].found == 2


def test_x_tsv_reader_accepts_letters_and_gathers_rows(tmp_path: Path) -> None:
    path = tmp_path / "run.tsv"
    path.write_text("A\t10 16\tD\tr50.9\nB\t1 2\tP\tbt41zzz\n\nA\t0 4\tD\tR50.9\n", "utf-8")

    assert read_x_tsv(path) == [
        CodeEvidence("A", "D", "R50.9", ((10, 16), (0, 4))),
        CodeEvidence("B", "P", "BT41ZZZ", ((1, 2),)),
    ]


@pytest.mark.parametrize(
    ("row", "message"),
    [
        ("A\t10 16\tDIAGNOSTICO", "line 1: 3 tab-separated field"),
        ("A\t10-16\tDIAGNOSTICO\tr50.9", "line 1: position '10-16', expected 'start end'"),
        ("A\t16 10\tDIAGNOSTICO\tr50.9", "empty or reversed"),
        ("A\t10 16\tDIAGNOSIS\tr50.9", "label 'DIAGNOSIS', expected DIAGNOSTICO or PROC"),
    ],
)
def test_x_tsv_reader_names_what_is_wrong(tmp_path: Path, row: str, message: str) -> None:
    path = tmp_path / "bad.tsv"
    path.write_text(row + "\n", encoding="utf-8")
    with pytest.raises(CorpusFormatError, match=message):
        read_x_tsv(path)


@pytest.mark.corpus
def test_gold_spans_score_perfectly_on_the_real_corpus(real_codiesp: Path) -> None:
    from training.corpora.codiesp import read_codiesp_references

    references = read_codiesp_references(real_codiesp, "dev")
    # Every gold reference, predicted as its own span, is found: P = R = F1 = 1.
    predictions = [
        CodeEvidence(ref.note_id, ref.label, ref.code, ((ref.start, ref.end),))
        for ref in references
    ]
    scores = x_scores(predictions, references)
    assert scores["DP"].f1 == pytest.approx(1.0)
    assert scores["D"].gold + scores["P"].gold == scores["DP"].gold


def test_label_of_a_codiesp_code() -> None:
    assert [label_of_code(code) for code in ("R50.9", "I10", "BT41ZZZ", "BT02")] == [
        "D",
        "D",
        "P",
        "P",
    ]


def test_predicted_evidence_keeps_codes_above_threshold_with_their_highlights() -> None:
    def prediction(code: str, above: bool, *spans: tuple[int, int]) -> CodePrediction:
        highlights = tuple(Highlight(start, end, "x" * (end - start), 0.5) for start, end in spans)
        return CodePrediction(code, "", 0.9 if above else 0.1, 1, above, highlights)

    ranked = [
        [prediction("R50.9", True, (10, 16), (0, 4)), prediction("I10", False, (0, 4))],
        [prediction("BT41ZZZ", True), prediction("R05", True, (3, 5))],
    ]

    assert predicted_evidence(["A", "B"], ranked) == [
        CodeEvidence("A", "D", "R50.9", ((10, 16), (0, 4))),
        CodeEvidence("B", "P", "BT41ZZZ", ()),
        CodeEvidence("B", "D", "R05", ((3, 5),)),
    ]
    # A one-system model names its label; codes are not guessed then.
    assert {item.label for item in predicted_evidence(["A", "B"], ranked, "D")} == {"D"}
