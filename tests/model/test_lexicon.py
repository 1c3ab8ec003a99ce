from pathlib import Path

import pytest

from model.context import ContextRules
from model.fusion import FeatureBuilder
from model.lexicon import (
    MAX_SPLIT_GAP,
    SNAP_MIN_SHARE,
    MentionLexicon,
    MentionLink,
    MentionTrie,
    SplitMentions,
)
from model.neighbours import NeighbourIndex
from model.text import lexicon_words


def _trie(*mentions: tuple[str, str, float]) -> MentionTrie:
    return MentionTrie(
        {tuple(text.split()): [MentionLink(code, weight, 3, 2)] for text, code, weight in mentions}
    )


def test_matching_ignores_case_accents_and_punctuation() -> None:
    trie = _trie(("hipertension arterial", "I10", 0.9))
    (match,) = trie.find("Antecedentes: HIPERTENSIÓN, arterial.", "evidence")
    assert match.links[0].code == "I10"
    assert (match.start, match.end) == (14, 36)


def test_the_longest_match_wins_and_matches_inside_it_are_dropped() -> None:
    trie = _trie(
        ("diabetes", "E11.9", 0.5),
        ("diabetes mellitus tipo 2", "E11.9", 0.9),
        ("mellitus tipo", "E10.9", 0.2),
        ("tipo 2 con", "X00", 0.1),
    )
    text = "Paciente con diabetes mellitus tipo 2 con nefropatia"
    found = [(text[m.start : m.end], m.n_words) for m in trie.find(text, "evidence")]
    # "mellitus tipo" lies inside the longest match; "tipo 2 con" overlaps it and runs past it.
    assert found == [("diabetes mellitus tipo 2", 4), ("tipo 2 con", 3)]


def test_singular_and_plural_mentions_match_each_other() -> None:
    trie = _trie(("lesion hepatica", "K76.9", 0.8))
    text = "Se observan lesiones hepáticas múltiples"
    (match,) = trie.find(text, "evidence")
    assert text[match.start : match.end] == "lesiones hepáticas"


def test_mentions_that_fold_together_keep_one_link_per_code() -> None:
    trie = MentionTrie(
        {
            ("urgencias",): [MentionLink("R39.15", 0.6, 3, 2)],
            ("urgencia",): [MentionLink("R39.15", 0.4, 5, 2), MentionLink("R39.16", 0.2, 5, 1)],
        }
    )
    assert trie.mentions == {
        ("urgencia",): (MentionLink("R39.15", 0.6, 3, 2), MentionLink("R39.16", 0.2, 5, 1))
    }


def test_sources_do_not_hide_each_other() -> None:
    lexicon = MentionLexicon(
        {
            "evidence": _trie(("dolor", "R52", 0.6)),
            "mined": _trie(("dolor toracico", "R07.9", 0.7)),
        }
    )
    found = {(m.source, m.links[0].code) for m in lexicon.find("Dolor torácico intenso")}
    assert found == {("evidence", "R52"), ("mined", "R07.9")}


def test_a_lexicon_survives_its_json_file(tmp_path: Path) -> None:
    lexicon = MentionLexicon({"catalogue": _trie(("neumonia", "J18.9", 0.4))})
    lexicon.save(tmp_path / "lexicon.json")
    loaded = MentionLexicon.load(tmp_path / "lexicon.json")
    assert loaded.codes() == {"J18.9"}
    assert loaded.trie("catalogue").mentions[("neumonia",)] == (MentionLink("J18.9", 0.4, 3, 2),)


def _split(*parts: str, code: str = "BT41ZZZ") -> SplitMentions:
    return SplitMentions(
        {tuple(tuple(part.split()) for part in parts): [MentionLink(code, 0.7, 3, 2)]}
    )


def test_a_split_mention_spans_its_parts_in_text_order() -> None:
    text = "Ecografía abdominal: lesión quística renal derecha. Sin hallazgos."
    (match,) = _split("ecografia", "renal derecha").find(text, "split")
    assert text[match.start : match.end] == "Ecografía abdominal: lesión quística renal derecha"
    assert match.n_words == 3
    assert match.links[0].code == "BT41ZZZ"


def test_split_parts_out_of_order_or_too_far_apart_do_not_match() -> None:
    mentions = _split("ecografia", "renal derecha")
    assert mentions.find("Lesión renal derecha vista en la ecografía.", "split") == []
    far = "Ecografía normal. " + "x " * MAX_SPLIT_GAP + "Lesión renal derecha."
    assert mentions.find(far, "split") == []


def test_a_split_match_takes_the_nearest_parts() -> None:
    # Two occurrences of the first part before one of the second: the shorter span wins.
    text = "RMN previa normal. Nueva RMN con lesión cerebral."
    (match,) = _split("rmn", "cerebral", code="B030ZZZ").find(text, "split")
    assert text[match.start : match.end] == "RMN con lesión cerebral"


def test_a_split_lexicon_survives_its_json_file(tmp_path: Path) -> None:
    lexicon = MentionLexicon({"split": _split("ecografias", "renal derecha")})
    lexicon.save(tmp_path / "lexicon.json")
    loaded = MentionLexicon.load(tmp_path / "lexicon.json")
    # Keys are stored as matched: plural endings cut.
    assert loaded.trie("split").mentions == {
        (("ecografia",), ("renal", "derecha")): (MentionLink("BT41ZZZ", 0.7, 3, 2),)
    }
    assert [m.source for m in loaded.find("ecografías: masa renal derecha")] == ["split"]


def _snapped(lexicon: MentionLexicon, text: str) -> list[str]:
    note_words = lexicon_words(text)
    starts = [word.start for word in note_words]
    spans = [lexicon.evidence_span(m, text, note_words, starts) for m in lexicon.find(text)]
    return [text[start:end] for start, end in spans]


def test_an_evidence_span_takes_in_the_words_coders_mark_next_to_it() -> None:
    shares = {"periferica": SNAP_MIN_SHARE, "aguda": 0.3, "con": 0.01}
    lexicon = MentionLexicon({"evidence": _trie(("paralisis facial", "G51.0", 0.8))}, shares)
    assert _snapped(lexicon, "Presenta parálisis facial periférica.") == [
        "parálisis facial periférica"
    ]
    # A word below the share, or one across punctuation, stays out.
    assert _snapped(lexicon, "Con parálisis facial, aguda.") == ["parálisis facial"]
    # One word on each side at most.
    assert _snapped(lexicon, "aguda parálisis facial periférica aguda") == [
        "aguda parálisis facial periférica"
    ]


def test_reference_words_survive_the_json_file(tmp_path: Path) -> None:
    lexicon = MentionLexicon({"evidence": _trie(("enfisema", "J43.9", 0.7))}, {"pulmonar": 0.4})
    lexicon.save(tmp_path / "lexicon.json")
    loaded = MentionLexicon.load(tmp_path / "lexicon.json")
    assert loaded.reference_words == {"pulmonar": 0.4}
    assert _snapped(loaded, "enfisema pulmonar") == ["enfisema pulmonar"]


def test_an_unknown_format_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="re-export"):
        MentionLexicon.from_dict({"format": 99, "sources": {}})


def test_a_match_inside_a_negation_scope_is_flagged() -> None:
    lexicon = MentionLexicon({"evidence": _trie(("fiebre", "R50.9", 0.8))})
    neighbours = NeighbourIndex.build(["fiebre alta", "tos seca"], [["R50.9"], ["R05"]])
    builder = FeatureBuilder(lexicon, neighbours, {"R50.9": 1}, ContextRules.for_language("es"))
    negated = builder.signals("El paciente niega fiebre.")
    affirmed = builder.signals("El paciente refiere fiebre.")
    assert [flags.negated for flags in negated.flags] == [True]
    assert [flags.negated for flags in affirmed.flags] == [False]
