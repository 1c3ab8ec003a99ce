from training.corpora.base import Document, EvidenceSpan
from training.projection import (
    align_sentences,
    cognate_similarity,
    fit_translator,
    project_spans,
)


def test_sentences_align_one_to_one_when_lengths_agree() -> None:
    assert align_sentences([40, 80, 20], [38, 85, 22]) == [([0], [0]), ([1], [1]), ([2], [2])]


def test_a_sentence_split_in_two_aligns_one_to_two() -> None:
    beads = align_sentences([40, 160, 30], [42, 75, 80, 28])
    assert ([1], [1, 2]) in beads


def test_cognates_are_similar_and_unrelated_words_are_not() -> None:
    assert cognate_similarity("hipertension", "hypertension") > 0.5
    assert cognate_similarity("fiebre", "cough") < 0.2


def test_a_spanish_span_lands_on_its_english_phrase() -> None:
    spanish = "Paciente con hipertensión arterial. Refiere fiebre y tos."
    english = "Patient with arterial hypertension. He reports fever and cough."
    span = EvidenceSpan("I10", spanish.index("hipertensión"), spanish.index(". Refiere"))
    es_doc = Document("n1", spanish, ("I10",), (span,))
    en_doc = Document("n1", english, ("I10",))
    pairs = [
        (
            Document(f"b{i}", "Fiebre alta. Tos seca.", ()),
            Document(f"b{i}", "High fever. Dry cough.", ()),
        )
        for i in range(3)
    ]
    translator = fit_translator([(es_doc, en_doc), *pairs])
    (projected,) = project_spans(es_doc, en_doc, translator).spans
    assert english[projected.start : projected.end] == "arterial hypertension"
    assert projected.code == "I10"


def test_a_projected_part_stays_tied_to_its_mention() -> None:
    spanish = "Paciente con hipertensión arterial. Refiere fiebre y tos."
    english = "Patient with arterial hypertension. He reports fever and cough."
    span = EvidenceSpan("I10", spanish.index("hipertensión"), spanish.index(". Refiere"), 4)
    es_doc = Document("n1", spanish, ("I10",), (span,))
    en_doc = Document("n1", english, ("I10",))
    translator = fit_translator([(es_doc, en_doc)])
    (projected,) = project_spans(es_doc, en_doc, translator).spans
    assert projected.part_of == 4
