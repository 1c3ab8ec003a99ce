from model.text import fold, phrase_key, words


def test_fold_keeps_every_offset_and_drops_case_accents_and_punctuation() -> None:
    text = "Niégó DOLOR-torácico; Ñandú (über)"
    folded = fold(text)
    assert len(folded) == len(text)
    assert folded == "niego dolor toracico  nandu  uber "


def test_words_point_back_into_the_original_text() -> None:
    text = "Fiebre de 39,5 ºC y tos"
    found = words(text)
    assert [w.text for w in found] == ["fiebre", "de", "39", "5", "c", "y", "tos"]
    assert all(fold(text[w.start : w.end]) == w.text for w in found)


def test_phrase_key_normalises_a_mention() -> None:
    assert phrase_key("Hipertensión  Arterial.") == ("hipertension", "arterial")
    assert phrase_key("--") == ()
