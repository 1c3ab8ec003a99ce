"""Highlight rules on hand-made attention: word snapping, phrases, caps, unusable weights."""

from __future__ import annotations

import re

import numpy as np
import pytest

from model.highlights import extract_highlights


def word_offsets(text: str) -> np.ndarray:
    """One token per word or punctuation mark, as (T, 2): how a word-level tokenizer splits."""
    return np.array([match.span() for match in re.finditer(r"\w+|[^\w\s]", text)], np.int64)


def weights_on(text: str, weighted: dict[str, float]) -> tuple[np.ndarray, np.ndarray]:
    """Word-level offsets of `text` and weights: `weighted[word]` on each token, 0 elsewhere."""
    offsets = word_offsets(text)
    weights = np.array([weighted.get(text[start:end], 0.0) for start, end in offsets.tolist()])
    return weights, offsets


def spans(text: str, weighted: dict[str, float], **options: int | float) -> list[str]:
    weights, offsets = weights_on(text, weighted)
    return [h.text for h in extract_highlights(weights, offsets, text, **options)]  # type: ignore[arg-type]


def test_neighbouring_tokens_merge_and_weights_sum() -> None:
    text = "chest pain and high fever today"
    weights = np.array([0.05, 0.30, 0.02, 0.25, 0.35, 0.03])
    highlights = extract_highlights(weights, word_offsets(text), text)
    # Kept: weight >= 0.1 x 0.35. "chest pain" and "high fever" are bridged by nothing: the
    # conjunction "and" between them keeps two findings apart.
    assert [(h.text, round(h.weight, 6)) for h in highlights] == [
        ("high fever", 0.60),
        ("chest pain", 0.35),
    ]
    assert (highlights[0].start, highlights[0].end) == (15, 25)
    top_one = extract_highlights(weights, word_offsets(text), text, max_tokens=1)
    assert [(h.text, h.weight) for h in top_one] == [("fever", 0.35)]


def test_a_phrase_bridges_a_short_gap_of_unweighted_words() -> None:
    text = "Estenosis en la unión pieloureteral derecha."
    weighted = {"Estenosis": 0.3, "unión": 0.1, "pieloureteral": 0.4}
    weights, offsets = weights_on(text, weighted)

    highlights = extract_highlights(weights, offsets, text)

    # One phrase: "en la" is bridged, adding no weight; "derecha" has none and is not claimed.
    assert [(h.text, round(h.weight, 6)) for h in highlights] == [
        ("Estenosis en la unión pieloureteral", 0.8)
    ]
    assert spans(text, weighted, max_gap_words=1) == ["unión pieloureteral", "Estenosis"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("fiebre y tos", ["fiebre", "tos"]),  # a conjunction: two findings
        ("fever, cough", ["fever", "cough"]),  # punctuation
        ("fiebre (tos)", ["fiebre", "tos"]),
        ("fever.\ncough", ["fever", "cough"]),
        ("fever\ncough", ["fever", "cough"]),  # a line break
        ("fever on most days cough", ["fever", "cough"]),  # three words: too far apart
    ],
)
def test_phrases_never_bridge_punctuation_conjunctions_or_long_gaps(
    text: str, expected: list[str]
) -> None:
    first, second = expected
    assert sorted(spans(text, {first: 0.5, second: 0.5})) == sorted(expected)


def test_phrases_are_capped_in_words() -> None:
    words = [f"w{index}" for index in range(10)]
    text = " ".join(words)
    weighted = {word: 1.0 - index / 100 for index, word in enumerate(words)}

    capped = spans(text, weighted, max_tokens=10)

    assert capped == [" ".join(words[:8]), " ".join(words[8:])]
    assert spans(text, weighted, max_tokens=10, max_phrase_words=3) == [
        "w0 w1 w2",
        "w3 w4 w5",
        "w6 w7 w8",
        "w9",
    ]


def test_subword_pieces_widen_to_the_whole_word() -> None:
    text = "acute gastritis"
    offsets = np.array([[0, 5], [6, 11], [11, 15]])  # "acute", "gastr", "itis"
    weights = np.array([0.0, 0.0, 0.9])
    assert [(h.text, h.weight) for h in extract_highlights(weights, offsets, text)] == [
        ("gastritis", 0.9)
    ]
    narrow = extract_highlights(weights, offsets, text, expand_to_words=False)
    assert [(h.start, h.end, h.text) for h in narrow] == [(11, 15, "itis")]


@pytest.mark.parametrize(
    ("text", "piece", "word"),
    [
        ("He doesn't cough", "'t", "doesn't"),
        ("He doesn’t cough", "’t", "doesn’t"),
        ("Reflujo vésico-ureteral grado II", "-ureteral", "vésico-ureteral"),
        ("Reflujo ve\u0301sico-ureteral", "sico", "ve\u0301sico-ureteral"),  # decomposed accent
    ],
)
def test_apostrophe_and_hyphen_pieces_snap_to_their_word(text: str, piece: str, word: str) -> None:
    start = text.index(piece)
    offsets = np.array([[0, 2], [start, start + len(piece)]])
    highlights = extract_highlights(np.array([0.0, 1.0]), offsets, text)
    assert [h.text for h in highlights] == [word]


def test_lone_punctuation_is_never_evidence() -> None:
    text = "fever , cough"
    weights = np.array([0.0, 1.0, 0.0])
    assert extract_highlights(weights, word_offsets(text), text) == []
    # ... but it still counts against max_tokens and min_ratio, like any token.
    weights = np.array([0.5, 1.0, 0.0])
    assert [h.text for h in extract_highlights(weights, word_offsets(text), text)] == ["fever"]


def test_unusable_weights_and_bad_input() -> None:
    text = "fever cough"
    offsets = word_offsets(text)
    assert extract_highlights(np.array([0.0, 0.0]), offsets, text) == []
    assert extract_highlights(np.array([np.nan, -1.0]), offsets, text) == []
    assert extract_highlights(np.zeros(0), np.zeros((0, 2)), "") == []
    with pytest.raises(ValueError, match="2 attention weights for 1 token offsets"):
        extract_highlights(np.array([0.5, 0.5]), offsets[:1], text)
    with pytest.raises(ValueError, match="outside the text"):
        extract_highlights(np.array([1.0, 1.0]), offsets, "fever")
    with pytest.raises(ValueError, match="max_phrase_words"):
        extract_highlights(np.array([1.0, 1.0]), offsets, text, max_phrase_words=0)
