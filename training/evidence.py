"""The CodiEsp-X evidence metric: are a code's evidence spans where the coders marked it?

Owns the rule (a predicted span must contain the gold reference, reaching at most
`X_TOLERANCE` characters beyond it on either side), micro precision/recall/F1 over (note, label,
code) pairs per label and combined, evidence hit@1 for correctly predicted codes, and the X TSV
that predictions are written to and read back from. Pure Python: the official script no longer
runs on current pandas, so this is the rule, re-implemented and tested on hand-made cases.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from model.codes import CodeSystem, normalize
from model.prediction import CodePrediction
from training.corpora.base import EvidenceReference
from training.corpora.errors import CorpusFormatError

X_TOLERANCE = 10  # characters, as in the CodiEsp-X evaluation
X_LABELS = {"D": "DIAGNOSTICO", "P": "PROCEDIMIENTO"}  # our letter -> the X files' label
LABEL_SYSTEMS = {"D": CodeSystem.ICD10_CM, "P": CodeSystem.ICD10_PCS}
COMBINED = "DP"  # the key of the combined score, beside "D" and "P"

PairKey = tuple[str, str, str]  # (note id, label letter, normalised code)
Span = tuple[int, int]  # [start, end) character offsets


@dataclass(frozen=True)
class CodeEvidence:
    """One predicted (note, code) with its evidence spans, best first; `spans` may be empty
    (a code above threshold the model gave no evidence for still counts as predicted)."""

    note_id: str
    label: str  # "D" or "P"
    code: str  # normalised
    spans: tuple[Span, ...]

    @property
    def key(self) -> PairKey:
        return (self.note_id, self.label, self.code)


@dataclass(frozen=True)
class XScore:
    """Micro scores over distinct (note, label, code) pairs."""

    predicted: int  # distinct predicted pairs
    gold: int  # distinct gold pairs
    found: int  # gold pairs with at least one predicted span meeting the rule

    @property
    def precision(self) -> float:
        return self.found / self.predicted if self.predicted else 0.0

    @property
    def recall(self) -> float:
        return self.found / self.gold if self.gold else 0.0

    @property
    def f1(self) -> float:
        total = self.precision + self.recall
        return 2 * self.precision * self.recall / total if total else 0.0


@dataclass(frozen=True)
class HitAtOne:
    """Among correctly predicted codes (predicted pairs that are gold pairs), how often the
    first evidence span meets the X rule, and how often it overlaps a gold reference at all.
    A correct code without any span counts as a miss on both."""

    correct_codes: int
    rule_hits: int
    overlap_hits: int

    @property
    def rule_rate(self) -> float:
        return self.rule_hits / self.correct_codes if self.correct_codes else 0.0

    @property
    def overlap_rate(self) -> float:
        return self.overlap_hits / self.correct_codes if self.correct_codes else 0.0


# --- the rule -----------------------------------------------------------------------------------


def meets_x_rule(span: Span, reference: Span, tolerance: int = X_TOLERANCE) -> bool:
    """The CodiEsp-X rule: the predicted span starts at most `tolerance` characters before the
    reference and ends at most `tolerance` characters after it, and so contains it whole.

    This is the official script's test: 0 <= gold_start - pred_start <= tol and
    0 <= pred_end - gold_end <= tol. A span inside the reference (too short) or starting after
    it does not count.
    """
    (pred_start, pred_end), (gold_start, gold_end) = span, reference
    return 0 <= gold_start - pred_start <= tolerance and 0 <= pred_end - gold_end <= tolerance


def overlaps(span: Span, reference: Span) -> bool:
    """Whether two [start, end) spans share at least one character."""
    return span[0] < reference[1] and reference[0] < span[1]


def reference_spans(references: Iterable[EvidenceReference]) -> dict[PairKey, list[Span]]:
    """Each gold pair's references, each read as one span (a discontinuous reference runs from
    its earliest start to its latest end: everything in between counts as part of it)."""
    spans: dict[PairKey, list[Span]] = {}
    for reference in references:
        key = (reference.note_id, reference.label, reference.code)
        spans.setdefault(key, []).append((reference.start, reference.end))
    return spans


# --- scores -------------------------------------------------------------------------------------


def _merge_predictions(predictions: Iterable[CodeEvidence]) -> dict[PairKey, list[Span]]:
    """Spans per distinct predicted pair, in the order given (a pair listed twice is one)."""
    merged: dict[PairKey, list[Span]] = {}
    for prediction in predictions:
        merged.setdefault(prediction.key, []).extend(prediction.spans)
    return merged


def _score(
    predicted: Mapping[PairKey, list[Span]],
    gold: Mapping[PairKey, list[Span]],
    tolerance: int,
) -> XScore:
    found = sum(
        1
        for key, references in gold.items()
        if any(
            meets_x_rule(span, reference, tolerance)
            for span in predicted.get(key, ())
            for reference in references
        )
    )
    return XScore(predicted=len(predicted), gold=len(gold), found=found)


def x_scores(
    predictions: Iterable[CodeEvidence],
    references: Iterable[EvidenceReference],
    *,
    tolerance: int = X_TOLERANCE,
) -> dict[str, XScore]:
    """CodiEsp-X micro scores for "D", "P" and both ("DP").

    A gold pair is found when any predicted span for it meets the rule against any of its
    references (one is enough). Precision is over distinct predicted pairs, recall over distinct
    gold pairs. Pairs are keyed by (note, label, code), so a diagnosis and a procedure that
    happen to share a code string never match each other.
    """
    predicted = _merge_predictions(predictions)
    gold = reference_spans(references)
    scores = {}
    for label in ("D", "P", COMBINED):
        scores[label] = _score(
            {key: spans for key, spans in predicted.items() if key[1] in label},
            {key: spans for key, spans in gold.items() if key[1] in label},
            tolerance,
        )
    return scores


def hit_at_one(
    predictions: Iterable[CodeEvidence],
    references: Iterable[EvidenceReference],
    *,
    tolerance: int = X_TOLERANCE,
) -> dict[str, HitAtOne]:
    """Evidence hit@1 for "D", "P" and both ("DP"), over the correctly predicted codes."""
    predicted = _merge_predictions(predictions)
    gold = reference_spans(references)
    results = {}
    for label in ("D", "P", COMBINED):
        correct = [key for key in predicted if key in gold and key[1] in label]
        rule_hits = overlap_hits = 0
        for key in correct:
            if not predicted[key]:
                continue
            first = predicted[key][0]
            rule_hits += any(meets_x_rule(first, ref, tolerance) for ref in gold[key])
            overlap_hits += any(overlaps(first, ref) for ref in gold[key])
        results[label] = HitAtOne(len(correct), rule_hits, overlap_hits)
    return results


# --- the X TSV ----------------------------------------------------------------------------------


def write_x_tsv(predictions: Iterable[CodeEvidence], path: Path) -> int:
    """Write CodiEsp-X predictions: `case<TAB>start end<TAB>label<TAB>code`, one row per span.

    Labels are written as the X files spell them (DIAGNOSTICO, PROCEDIMIENTO) and codes in
    lower case, as CodiEsp's own files and the official script expect. Spans keep their order,
    so the first row of a pair is its best evidence. A pair without spans has no row (the format
    needs a position). Returns the number of rows written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = 0
    with path.open("w", encoding="utf-8", newline="") as stream:
        for prediction in predictions:
            label = X_LABELS[prediction.label]
            for start, end in prediction.spans:
                stream.write(
                    f"{prediction.note_id}\t{start} {end}\t{label}\t{prediction.code.lower()}\n"
                )
                rows += 1
    return rows


def read_x_tsv(path: Path) -> list[CodeEvidence]:
    """Read X predictions written by `write_x_tsv` (or any CodiEsp-X submission) back.

    Rows of the same (note, label, code) are gathered in file order, first row first. The label
    may be written "DIAGNOSTICO"/"PROCEDIMIENTO" or "D"/"P"; codes are normalised.
    """
    letters = {name: letter for letter, name in X_LABELS.items()} | {"D": "D", "P": "P"}
    gathered: dict[PairKey, list[Span]] = {}
    with path.open(encoding="utf-8", newline="") as stream:
        for line_no, line in enumerate(stream, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split("\t")
            where = f"{path} line {line_no}"
            if len(fields) != 4:
                raise CorpusFormatError(
                    f"{where}: {len(fields)} tab-separated field(s), expected 4: "
                    "case, 'start end', label, code"
                )
            note_id, position, label, code = (field.strip() for field in fields)
            if label not in letters:
                raise CorpusFormatError(
                    f"{where}: label {label!r}, expected DIAGNOSTICO or PROCEDIMIENTO"
                )
            letter = letters[label]
            key = (note_id, letter, normalize(code, LABEL_SYSTEMS[letter]))
            gathered.setdefault(key, []).append(_parse_position(position, where))
    return [
        CodeEvidence(note_id, letter, code, tuple(spans))
        for (note_id, letter, code), spans in gathered.items()
    ]


def _parse_position(position: str, where: str) -> Span:
    bounds = position.split()
    if len(bounds) != 2 or not all(bound.isdigit() for bound in bounds):
        raise CorpusFormatError(f"{where}: position {position!r}, expected 'start end'")
    start, end = int(bounds[0]), int(bounds[1])
    if start >= end:
        raise CorpusFormatError(f"{where}: position {position!r} is empty or reversed")
    return start, end


def label_of_code(code: str) -> str:
    """ "D" or "P" for a normalised CodiEsp code: ICD-10-CM codes longer than three characters
    carry a dot (`R50.9`), ICD-10-PCS codes never do and have at least four (`BT41ZZZ`, `BT02`)."""
    return "D" if "." in code or len(code) <= 3 else "P"


def predicted_evidence(
    note_ids: Sequence[str],
    predictions: Sequence[Sequence[CodePrediction]],
    label: str | None = None,
) -> list[CodeEvidence]:
    """The codes above threshold, per note in rank order, with their highlights best first.

    `label` is "D" or "P" when the model codes one system; None reads it from each code.
    """
    evidence: list[CodeEvidence] = []
    for note_id, ranked in zip(note_ids, predictions, strict=True):
        for prediction in ranked:
            if prediction.above_threshold:
                evidence.append(
                    CodeEvidence(
                        note_id=note_id,
                        label=label or label_of_code(prediction.code),
                        code=prediction.code,
                        spans=tuple((h.start, h.end) for h in prediction.highlights),
                    )
                )
    return evidence


def evidence_report(
    scores: Mapping[str, XScore], hits: Mapping[str, HitAtOne]
) -> dict[str, dict[str, float | int]]:
    """Scores and hit@1 per label as plain JSON-ready numbers."""
    return {
        label: {
            "precision": scores[label].precision,
            "recall": scores[label].recall,
            "f1": scores[label].f1,
            "predicted": scores[label].predicted,
            "gold": scores[label].gold,
            "found": scores[label].found,
            "correct_codes": hits[label].correct_codes,
            "hit_at_1_rule": hits[label].rule_rate,
            "hit_at_1_overlap": hits[label].overlap_rate,
        }
        for label in ("D", "P", COMBINED)
    }
