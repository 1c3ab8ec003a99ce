"""The abstention check reads a note's first characters before tokenizing all of it: its decision
must be the one a count over the whole note gives, for notes long and short, with known words
early, late, or not at all."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model.runtime import OnnxPredictor
from service.inference import (
    KNOWN_WORDS_PREFIX_CHARS,
    known_word_tokens,
    shows_known_words,
)

FLOOR = 3
JUNK = ["12345", "--", "!!", "678,9", "**", "\u200b", "//", "3.5", "(", ")", "mg"]
WORDS = ["fever", "cough", "hypertension", "fiebre", "tos", "dolor", "patient", "zqxv"]


@pytest.fixture(scope="module")
def predictor(bundle_dir: Path) -> OnnxPredictor:
    return OnnxPredictor(bundle_dir, threads=1)


def random_note(rng: np.random.Generator, n_pieces: int, word_share: float) -> str:
    pieces = [
        str(rng.choice(WORDS)) if rng.random() < word_share else str(rng.choice(JUNK))
        for _ in range(n_pieces)
    ]
    separators = rng.choice([" ", "  ", "\n", "", " \t"], size=n_pieces)
    return "".join(piece + str(sep) for piece, sep in zip(pieces, separators, strict=True))


@pytest.mark.parametrize("seed", range(6))
def test_the_prefix_check_decides_as_the_whole_note_does(
    predictor: OnnxPredictor, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    for _ in range(40):
        note = random_note(rng, int(rng.integers(1, 600)), float(rng.choice([0.0, 0.01, 0.3])))
        if not note.strip():
            continue
        (whole,) = known_word_tokens(predictor, [note])
        if shows_known_words(predictor, note, FLOOR):
            assert whole >= FLOOR, note


def test_known_words_past_the_prefix_are_counted_whole(predictor: OnnxPredictor) -> None:
    junk = "12345 -- !! " * (KNOWN_WORDS_PREFIX_CHARS // 4)
    assert not shows_known_words(predictor, junk + "fever cough pain", FLOOR)
    # The tiny bundle reads 32 tokens: words past them do not count, as in the graph.
    assert known_word_tokens(predictor, [junk + "fever cough pain"]) == [0]
    assert known_word_tokens(predictor, ["12 fever cough pain " + junk]) == [3]
    assert shows_known_words(predictor, "12 fever cough pain " + junk, FLOOR)
