import pytest

from model.text import phrase_key
from training.corpora.base import Document, EvidenceSpan
from training.lexicon import (
    PRIOR_NOTES,
    PRIOR_WEIGHT,
    build_lexicon,
    catalogue_phrases,
    description_fragments,
    evidence_phrases,
    mined_phrases,
    partial_phrases,
    reference_word_shares,
    split_phrases,
)


def _doc(doc_id: str, text: str, codes: tuple[str, ...], spans: tuple[EvidenceSpan, ...] = ()):
    return Document(id=doc_id, text=text, codes=codes, spans=spans)


def test_evidence_phrases_are_the_folded_span_texts() -> None:
    doc = _doc("a", "Refiere Dolor Torácico.", ("R07.9",), (EvidenceSpan("R07.9", 8, 22),))
    assert evidence_phrases([doc]) == {("dolor", "toracico"): {"R07.9"}}


def test_a_link_weight_is_its_precision_in_training_notes() -> None:
    span = EvidenceSpan("R50.9", 0, 6)
    documents = [
        _doc("a", "fiebre alta", ("R50.9",), (span,)),
        _doc("b", "fiebre y tos", ("R50.9", "R05")),
        _doc("c", "sin fiebre", ("R05",)),
        _doc("d", "tos", ("R05",)),
    ]
    lexicon = build_lexicon(documents, mined=False)
    (link,) = lexicon.trie("evidence").mentions[("fiebre",)]
    assert (link.support, link.hits) == (3, 2)
    assert link.weight == pytest.approx((2 + PRIOR_NOTES * PRIOR_WEIGHT) / (3 + PRIOR_NOTES))


def test_mined_phrases_are_precise_for_their_code() -> None:
    documents = [
        _doc("a", "neumonia basal derecha", ("J18.9",)),
        _doc("b", "neumonia basal izquierda", ("J18.9",)),
        _doc("c", "fractura de cadera derecha", ("S72.0",)),
        _doc("d", "fractura de cadera izquierda", ("S72.0",)),
        _doc("e", "control", ()),
    ]
    phrases = mined_phrases(documents, max_note_share=0.5)
    assert phrases[("neumonia", "basal")] == {"J18.9"}
    assert phrases[("fractura", "de", "cadera")] == {"S72.0"}
    assert ("derecha",) not in phrases  # in notes of both codes: precise for neither
    assert not any(key[0] == "de" or key[-1] == "de" for key in phrases)


def test_catalogue_fragments_keep_the_head_and_drop_vague_ones() -> None:
    assert description_fragments("Neumonía, no especificada") == {
        ("neumonia", "no", "especificada"),
        ("neumonia",),
    }
    descriptions = {
        f"E1{i}.9": [f"Diabetes mellitus tipo {i}, sin complicaciones"] for i in range(5)
    }
    phrases = catalogue_phrases(descriptions)
    assert phrase_key("diabetes mellitus tipo 1") in phrases
    assert phrase_key("diabetes mellitus tipo 1 sin complicaciones") in phrases


def test_partial_phrases_are_the_shorter_content_word_runs_of_evidence_phrases() -> None:
    evidence = {
        phrase_key("hepatitis crónica por virus C"): {"B18.2"},
        phrase_key("hepatitis"): {"K75.9"},
    }
    partial = partial_phrases(evidence)
    assert partial[phrase_key("hepatitis cronica")] == {"B18.2"}
    assert partial[phrase_key("cronica por virus")] == {"B18.2"}
    assert phrase_key("hepatitis") not in partial  # a coders' phrase of its own already
    assert phrase_key("hepatitis cronica por virus c") not in partial  # the whole phrase
    # Never starting or ending on a function word or a short token.
    assert not any(key[0] in {"por", "c"} or key[-1] in {"por", "c"} for key in partial)


def test_build_lexicon_has_a_partial_source_only_where_asked() -> None:
    span = EvidenceSpan("B18.2", 0, 17)
    documents = [
        _doc("a", "hepatitis cronica c", ("B18.2",), (span,)),
        _doc("b", "hepatitis cronica", ("B18.2",)),
    ]
    lexicon = build_lexicon(documents, mined=False)
    assert lexicon.sources == ["evidence", "partial"]
    (link,) = lexicon.trie("partial").mentions[phrase_key("hepatitis")]
    assert (link.code, link.support, link.hits) == ("B18.2", 2, 2)
    assert build_lexicon(documents, mined=False, partial=False).sources == ["evidence"]


def test_split_phrases_join_the_parts_of_one_mention_in_text_order() -> None:
    text = "Renal derecha con masa en la ecografía. Ecografía: quiste renal derecho."
    # The coder listed the parts out of text order; the mention is keyed in text order.
    ultrasound = (
        EvidenceSpan("BT41ZZZ", text.index("Ecografía:"), text.index(": quiste"), part_of=0),
        EvidenceSpan("BT41ZZZ", text.index("renal derecho"), len(text) - 1, part_of=0),
    )
    whole = EvidenceSpan("N28.1", text.index("quiste"), len(text) - 1)
    document = _doc("a", text, ("BT41ZZZ", "N28.1"), (*ultrasound[::-1], whole))
    assert split_phrases([document]) == {(("ecografia",), ("renal", "derecho")): {"BT41ZZZ"}}


def test_a_split_mention_is_weighted_by_the_notes_it_matches() -> None:
    text = "Ecografía: quiste renal derecho."
    parts = (
        EvidenceSpan("BT41ZZZ", 0, 9, part_of=3),
        EvidenceSpan("BT41ZZZ", text.index("renal"), len(text) - 1, part_of=3),
    )
    documents = [
        _doc("a", text, ("BT41ZZZ",), parts),
        _doc("b", "Ecografía sin lesión renal derecha.", ()),
        _doc("c", "Lesión renal derecha; ecografía pendiente.", ()),  # parts out of order
    ]
    lexicon = build_lexicon(documents, mined=False)
    (link,) = lexicon.trie("split").mentions[(("ecografia",), ("renal", "derecho"))]
    assert (link.support, link.hits) == (1, 1)
    # "derecha" is not "derecho": note b does not match either.
    assert link.weight == pytest.approx((1 + PRIOR_NOTES * PRIOR_WEIGHT) / (1 + PRIOR_NOTES))


def test_reference_word_shares_count_occurrences_inside_evidence_spans() -> None:
    text = "Enfisema pulmonar. Radiografía pulmonar normal."
    documents = [
        _doc(
            "a",
            text,
            ("J43.9",),
            (EvidenceSpan("J43.9", 0, text.index(".")),),
        ),
        _doc("b", "Sin enfisema.", ()),
    ]
    shares = reference_word_shares(documents)
    # "pulmonar": once inside of twice, smoothed by one more occurrence outside.
    assert shares["pulmonar"] == pytest.approx(1 / 3, abs=1e-3)
    assert shares["enfisema"] == pytest.approx(1 / 3, abs=1e-3)
    assert "normal" not in shares  # never inside a span
    assert build_lexicon(documents, mined=False).reference_words == shares
    assert build_lexicon(documents, mined=False, snap=False).reference_words == {}
