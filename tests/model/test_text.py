from model.text import fold, lexicon_words, phrase_key, plural_folded, word_texts, words


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
    assert word_texts(text) == [w.text for w in found]


def test_phrase_key_normalises_a_mention() -> None:
    assert phrase_key("Hipertensión  Arterial.") == ("hipertension", "arterial")
    assert phrase_key("Lesiones renales") == phrase_key("lesión renal") == ("lesion", "renal")
    assert phrase_key("--") == ()


def test_plural_folding_cuts_spanish_and_english_plurals_alike_and_once() -> None:
    pairs = {
        "lesiones": "lesion",
        "urgencias": "urgencia",
        "tumores": "tumor",
        "kidneys": "kidney",
        "lesions": "lesion",
    }
    for plural, singular in pairs.items():
        assert plural_folded(plural) == plural_folded(singular) == singular
    # Short words and double s stay; an over-cut is the same on both sides and stable.
    assert [plural_folded(w) for w in ("mas", "tos", "dos", "process")] == [
        "mas",
        "tos",
        "dos",
        "process",
    ]
    assert plural_folded("diabetes") == plural_folded(plural_folded("diabetes")) == "diabet"


def test_lexicon_words_keep_the_offsets_of_the_original_words() -> None:
    text = "Dos LESIONES hepáticas"
    found = lexicon_words(text)
    assert [w.text for w in found] == ["dos", "lesion", "hepatica"]
    assert [text[w.start : w.end] for w in found] == ["Dos", "LESIONES", "hepáticas"]
