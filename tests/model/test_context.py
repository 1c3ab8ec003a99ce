"""Context rules: a sentence built for every trigger, pseudo-trigger and terminator in the shipped
lists (es and en), plus hand-written sentences for the scope rule."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import pytest

from model.context import (
    CATEGORIES,
    ContextFlags,
    ContextRules,
    ContextRulesError,
    fold,
)

CONCEPT = {"es": "neumonía", "en": "pneumonia"}  # never part of a trigger


def shipped(language: str) -> dict[str, Any]:
    resource = resources.files("model") / "data" / f"context_{language}.json"
    raw: dict[str, Any] = json.loads(resource.read_text(encoding="utf-8"))
    return raw


def flags_of(language: str, text: str, phrase: str, occurrence: int = 0) -> ContextFlags:
    """Flags of the `occurrence`-th appearance of `phrase` in `text`."""
    start = -1
    for _ in range(occurrence + 1):
        start = text.index(phrase, start + 1)
    return ContextRules.for_language(language).read(text).flags(start, start + len(phrase))


def only(category: str | None) -> dict[str, bool]:
    return {name: name == category for name in CATEGORIES}


def as_dict(flags: ContextFlags) -> dict[str, bool]:
    return {name: getattr(flags, name) for name in CATEGORIES}


def capitalised(phrase: str) -> str:
    return phrase[:1].upper() + phrase[1:]


TRIGGERS = [
    pytest.param(language, category, direction, phrase, id=f"{language}-{direction}-{phrase}")
    for language in ("es", "en")
    for category in CATEGORIES
    for direction in ("pre", "post")
    for phrase in shipped(language)["categories"][category].get(direction, [])
]


@pytest.mark.parametrize(("language", "category", "direction", "trigger"), TRIGGERS)
def test_every_trigger_flags_its_category_and_names_itself(
    language: str, category: str, direction: str, trigger: str
) -> None:
    concept = CONCEPT[language]
    if direction == "pre":
        sentence = f"{capitalised(trigger)} {concept} grave."
    else:
        sentence = f"Paciente con {concept} {trigger}."
        if language == "en":
            sentence = f"Patient {concept} {trigger}."

    flags = flags_of(language, sentence, concept)

    assert as_dict(flags) == only(category), sentence
    assert [fold(cue) for cue in flags.cues] == [fold(trigger)], sentence


@pytest.mark.parametrize(
    ("language", "pseudo"),
    [
        pytest.param(language, phrase, id=f"{language}-{phrase}")
        for language in ("es", "en")
        for phrase in shipped(language)["pseudo"]
    ],
)
def test_pseudo_triggers_flag_nothing(language: str, pseudo: str) -> None:
    concept = CONCEPT[language]
    sentence = f"{capitalised(pseudo)} {concept}."
    assert not flags_of(language, sentence, concept).any, sentence


@pytest.mark.parametrize(
    ("language", "terminator"),
    [
        pytest.param(language, phrase, id=f"{language}-{phrase}")
        for language in ("es", "en")
        for phrase in shipped(language)["terminators"]
    ],
)
def test_terminators_end_a_negation_scope(language: str, terminator: str) -> None:
    concept = CONCEPT[language]
    negation, symptom = ("Sin", "fiebre") if language == "es" else ("Without", "fever")
    sentence = f"{negation} {symptom} {terminator} {concept}."

    assert flags_of(language, sentence, symptom).negated, sentence
    assert not flags_of(language, sentence, concept).any, sentence


# --- the scope rule, by hand ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("language", "text", "phrase", "category"),
    [
        # The brief's own list of triggers, in running text.
        ("es", "No presenta fiebre.", "fiebre", "negated"),
        ("es", "Niega dolor torácico.", "dolor torácico", "negated"),
        ("es", "Exploración sin adenopatías.", "adenopatías", "negated"),
        ("es", "Ausencia de reflejos osteotendinosos.", "reflejos", "negated"),
        ("es", "Se descarta apendicitis.", "apendicitis", "negated"),
        ("es", "Apendicitis descartada en la TC.", "Apendicitis", "negated"),
        ("es", "Ingresa para descartar apendicitis aguda.", "apendicitis", "hypothetical"),
        ("es", "Apendicitis aguda a descartar.", "Apendicitis", "hypothetical"),
        ("es", "Con sospecha de apendicitis aguda.", "apendicitis", "hypothetical"),
        ("es", "Posible apendicitis.", "apendicitis", "hypothetical"),
        ("es", "Probable apendicitis.", "apendicitis", "hypothetical"),
        ("es", "Madre con cáncer de mama.", "cáncer de mama", "family"),
        ("es", "Antecedentes familiares de cáncer de colon.", "cáncer de colon", "family"),
        ("es", "Su padre falleció de infarto agudo de miocardio.", "infarto", "family"),
        ("en", "No fever.", "fever", "negated"),
        ("en", "She denies chest pain.", "chest pain", "negated"),
        ("en", "Abdomen soft without guarding.", "guarding", "negated"),
        ("en", "Blood cultures negative for Staphylococcus.", "Staphylococcus", "negated"),
        ("en", "Admitted to rule out myocardial infarction.", "myocardial", "hypothetical"),
        ("en", "Possible appendicitis.", "appendicitis", "hypothetical"),
        ("en", "Suspected appendicitis.", "appendicitis", "hypothetical"),
        ("en", "Family history of colon cancer.", "colon cancer", "family"),
        ("en", "Mother with breast cancer.", "breast cancer", "family"),
        # Folding: case and accents are ignored, also in decomposed (NFD) text.
        ("es", "NIEGA FIEBRE.", "FIEBRE", "negated"),
        ("es", "Negó fiebre.", "fiebre", "negated"),
        ("es", "Nego\u0301 fiebre.", "fiebre", "negated"),
        ("es", "Tía con lupus.", "lupus", "family"),
        # A longer trigger wins over the shorter one inside it.
        ("es", "No se descarta apendicitis.", "apendicitis", "hypothetical"),
        ("en", "Appendicitis cannot be excluded.", "Appendicitis", "hypothetical"),
        ("en", "He doesn't have diabetes.", "diabetes", "negated"),
        # A dot in a number or an abbreviation does not end the sentence.
        ("es", "No hay lesiones de 2.5 cm.", "cm", "negated"),
        ("es", "Sin fiebre aprox. desde ayer.", "ayer", "negated"),
    ],
)
def test_hand_written_sentences(language: str, text: str, phrase: str, category: str) -> None:
    assert as_dict(flags_of(language, text, phrase)) == only(category)


@pytest.mark.parametrize(
    ("language", "text", "phrase"),
    [
        # Sentence ends: . ! ? and line breaks.
        ("es", "Niega fiebre. Presenta tos.", "tos"),
        ("es", "¿Fiebre? No. Tos productiva.", "Tos"),
        ("es", "Sin fiebre\nTos productiva", "Tos"),
        ("en", "Denies fever! Cough since Monday.", "Cough"),
        ("en", "No fever.\n\nCough for two days.", "Cough"),
        # Terminators.
        ("es", "Niega fiebre, pero refiere tos.", "tos"),
        ("es", "Niega fiebre; tos productiva.", "tos"),
        ("es", "Sin alergias conocidas, con antecedentes de hipertensión.", "hipertensión"),
        ("en", "Denies fever but has cough.", "cough"),
        ("en", "No fever; productive cough.", "cough"),
        # A post-trigger looks back only to the sentence start.
        ("es", "Tos. Neumonía descartada.", "Tos"),
        ("en", "Cough. Pneumonia was ruled out.", "Cough"),
        # Pseudo-triggers.
        ("es", "No obstante, presenta neumonía.", "neumonía"),
        ("es", "Diabetes mellitus no insulinodependiente con nefropatía.", "nefropatía"),
        ("es", "Sin embargo, neumonía bilateral.", "neumonía"),
        ("es", "Linfoma no Hodgkin de células B.", "células"),
        ("es", "Acude con su madre por dolor abdominal.", "dolor"),
        ("en", "Not only pneumonia but sepsis.", "pneumonia"),
        ("en", "Gram negative bacteremia.", "bacteremia"),
        ("en", "No change in the pneumonia.", "pneumonia"),
        # The trigger's own words are never in its scope.
        ("es", "Niega fiebre.", "Niega"),
    ],
)
def test_scope_stops_where_it_should(language: str, text: str, phrase: str) -> None:
    assert not flags_of(language, text, phrase).any, text


def test_scope_is_capped_at_the_window() -> None:
    rules = ContextRules.for_language("es")
    window = shipped("es")["max_scope_words"]
    filler = " ".join(["palabra"] * (window - 1))
    inside = f"No {filler} neumonía."
    outside = f"No {filler} palabra neumonía."

    assert rules.read(inside).flags(inside.index("neumonía"), len(inside) - 1).negated
    assert not rules.read(outside).flags(outside.index("neumonía"), len(outside) - 1).negated


def test_family_has_a_wider_window_than_negation() -> None:
    text = "Madre con antecedentes de cirugía de la rodilla izquierda por artrosis grave."
    assert flags_of("es", text, "artrosis").family
    text = "No antecedentes de cirugía de la rodilla izquierda por artrosis grave."
    assert not flags_of("es", text, "artrosis").negated


def test_a_span_reports_every_flag_and_cue_over_its_words() -> None:
    text = "Niega fiebre. Posible neumonía. Madre con asma."
    rules = ContextRules.for_language("es")
    note = rules.read(text)

    whole = note.flags(0, len(text))
    assert (whole.negated, whole.hypothetical, whole.family) == (True, True, True)
    assert whole.cues == ("Niega", "Posible", "Madre con")
    assert note.flags(0, 0) == ContextFlags()
    # Across the span "fiebre. Posible": the word after the trigger only.
    assert note.flags(text.index("fiebre"), text.index("Posible") + 3).cues == ("Niega",)


def test_flags_of_parts_unite() -> None:
    text = "Niega fiebre. Posible neumonía. Tos."
    note = ContextRules.for_language("es").read(text)
    parts = [note.flags(6, 12), note.flags(22, 30), note.flags(32, 35)]
    assert ContextFlags.union(parts) == ContextFlags(
        negated=True, hypothetical=True, cues=("Niega", "Posible")
    )
    assert ContextFlags.union([]) == ContextFlags()


def test_flags_refuse_a_span_outside_the_note() -> None:
    note = ContextRules.for_language("en").read("No fever.")
    with pytest.raises(ValueError, match="outside the note's 9 characters"):
        note.flags(5, 20)
    with pytest.raises(ValueError, match="outside"):
        note.flags(5, 4)


def test_reading_a_long_note_gives_the_same_flags_everywhere() -> None:
    sentence = "Niega fiebre, refiere tos. "
    text = sentence * 2000
    note = ContextRules.for_language("es").read(text)
    for repeat in (0, 999, 1999):
        offset = repeat * len(sentence)
        fever = offset + sentence.index("fiebre")
        cough = offset + sentence.index("tos")
        assert note.flags(fever, fever + 6).negated
        assert not note.flags(cough, cough + 3).negated


def test_unknown_language_is_refused() -> None:
    with pytest.raises(ValueError, match="use one of"):
        ContextRules.for_language("fr")


def test_rules_load_from_a_file_and_check_it(tmp_path: Any) -> None:
    raw = shipped("en")
    path = tmp_path / "rules.json"
    path.write_text(json.dumps(raw), encoding="utf-8")
    assert ContextRules.from_file(path).read("No fever.").flags(3, 8).negated

    twice = json.loads(json.dumps(raw))
    twice["categories"]["hypothetical"]["pre"].append("denies")
    with pytest.raises(ContextRulesError, match="'denies' is listed twice as a trigger"):
        ContextRules.from_dict(twice)
    pseudo = json.loads(json.dumps(raw))
    pseudo["pseudo"].append("no")
    with pytest.raises(ContextRulesError, match="both a trigger and a pseudo-trigger"):
        ContextRules.from_dict(pseudo)
    window = json.loads(json.dumps(raw))
    window["max_scope_words"] = 0
    with pytest.raises(ContextRulesError, match="max_scope_words"):
        ContextRules.from_dict(window)
    missing = json.loads(json.dumps(raw))
    del missing["categories"]["family"]
    with pytest.raises(ContextRulesError, match="categories"):
        ContextRules.from_dict(missing)
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(ContextRulesError, match="not valid JSON"):
        ContextRules.from_file(path)


def test_shipped_lists_cover_the_required_triggers() -> None:
    required = {
        "es": {
            "negated": ["no", "niega", "sin", "ausencia de", "se descarta"],
            "hypothetical": ["descartar", "sospecha de", "posible", "probable", "a descartar"],
            "family": ["madre con", "antecedentes familiares de", "padre"],
        },
        "en": {
            "negated": ["no", "denies", "without", "negative for"],
            "hypothetical": ["rule out", "possible", "suspected"],
            "family": ["family history of", "mother with"],
        },
    }
    for language, categories in required.items():
        lists = shipped(language)["categories"]
        for category, phrases in categories.items():
            listed = set(lists[category]["pre"]) | set(lists[category]["post"])
            assert set(phrases) <= listed, (language, category, set(phrases) - listed)
