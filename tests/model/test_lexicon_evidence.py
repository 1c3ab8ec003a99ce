"""A code's lexicon evidence, best first: coders' phrases, catalogue titles, mined n-grams."""

from model.context import ContextFlags
from model.fusion import NoteSignals
from model.lexicon import Match, MentionLink
from model.lexicon_evidence import lexicon_evidence


def test_evidence_puts_the_coders_phrases_before_heavier_mined_ngrams() -> None:
    text = "Antecedentes de interés: hipertensión arterial. Fumador."
    heading = (0, 23)  # "Antecedentes de interés": co-occurs with the code, never marked for it
    mention = (25, 46)  # "hipertensión arterial": coders marked it in training notes
    matches = [
        Match("mined", *heading, 3, (MentionLink("I10", 0.9, 20, 18),)),
        Match("evidence", *mention, 2, (MentionLink("I10", 0.6, 10, 6),)),
        Match("catalogue", *mention, 2, (MentionLink("I10", 0.3, 10, 3),)),
        Match(
            "mined", 48, 55, 1, (MentionLink("I10", 0.95, 5, 5), MentionLink("F17.210", 0.5, 5, 2))
        ),
    ]
    signals = NoteSignals(matches, [ContextFlags() for _ in matches], {})
    evidence = lexicon_evidence(signals, text)
    spans = [(item.start, item.end) for item in evidence["I10"]]
    assert spans == [mention, (48, 55), heading]  # coders' span first; mined by weight after
    assert evidence["I10"][0].weight == 0.6  # the best weight of that span's sources
    assert [item.text for item in evidence["F17.210"]] == ["Fumador"]
    shown = lexicon_evidence(signals, text, {"F17.210"})
    assert shown == {"F17.210": evidence["F17.210"]}  # only the codes asked for


def test_a_piece_of_a_coders_phrase_comes_after_every_whole_mention() -> None:
    text = "Hepatitis cronica por virus C"
    matches = [
        Match("partial", 0, 17, 2, (MentionLink("B18.2", 0.9, 10, 9),)),
        Match("mined", 18, 29, 3, (MentionLink("B18.2", 0.4, 10, 4),)),
    ]
    signals = NoteSignals(matches, [ContextFlags() for _ in matches], {})
    evidence = lexicon_evidence(signals, text)["B18.2"]
    # Too short to contain the coders' reference, however precise: last.
    assert [item.text for item in evidence] == ["por virus C", "Hepatitis cronica"]
