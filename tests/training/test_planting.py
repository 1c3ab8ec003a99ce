import numpy as np

from model.tokenizer import NoteTokenizer
from training.corpora.base import Document, EvidenceSpan
from training.l2r import graded_tokens_per_code
from training.planting import evidence_counts, evidence_relevance

NOTES = [
    "Paciente con fiebre alta y tos seca desde ayer.",
    "Refiere fiebre sin tos. Exploracion normal.",
    "Tos productiva, sin fiebre.",
]


def _documents() -> list[Document]:
    first, second = NOTES[0], NOTES[1]
    return [
        Document(
            "a",
            first,
            ("R50.9", "R05"),
            (
                EvidenceSpan("R50.9", first.index("fiebre"), first.index(" y tos")),
                EvidenceSpan("R05", first.index("tos seca"), first.index(" desde")),
            ),
        ),
        Document(
            "b",
            second,
            ("R50.9",),
            (EvidenceSpan("R50.9", second.index("fiebre"), second.index(" sin")),),
        ),
        Document("c", NOTES[2], ("R05",)),
    ]


def test_tokens_inside_a_code_s_spans_are_counted_per_note() -> None:
    tokenizer = NoteTokenizer.train(NOTES * 5, vocab_size=120)
    counts = evidence_counts(_documents(), tokenizer, ["R50.9", "R05"])
    fever = tokenizer.encode("fiebre").ids.tolist()
    cough = tokenizer.encode("tos").ids.tolist()
    assert all(counts[token, 0] == 2 for token in fever)  # both notes marked "fiebre" for R50.9
    assert all(counts[token, 1] == 1 for token in cough)
    assert counts[:, 1].sum() > 0 and counts[fever, 1].sum() == 0


def test_evidence_tokens_get_the_top_grades_and_mi_ranks_the_rest() -> None:
    mi = np.array([[0.9, 0.0], [0.1, 0.2], [0.5, 0.3], [0.0, 0.0]], dtype=np.float32)  # (V=4, C=2)
    counts = np.zeros_like(mi)
    counts[3, 0] = 1  # token 3 is evidence for code 0 although its MI is 0
    counts[1, 0] = 4  # token 1, marked more often, ranks first
    tokens, grades = graded_tokens_per_code(evidence_relevance(mi, counts), n_grades=2)
    assert tokens[0].tolist() == [1, 3, 0]
    assert grades[0].tolist() == [2, 1, 1]
    # Code 1 has no evidence: MI alone, as without spans.
    assert tokens[1].tolist()[:2] == [2, 1]
