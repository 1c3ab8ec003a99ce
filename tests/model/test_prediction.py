"""Ranking a note's scores: `best_first` against a stable full sort."""

import numpy as np

from model.prediction import best_first


def test_best_first_equals_a_stable_full_sort() -> None:
    rng = np.random.default_rng(3)
    scores = rng.integers(0, 5, size=200).astype(np.float32)  # many ties
    for k in (1, 7, 50, 199, 200, None):
        expected = np.argsort(-scores, kind="stable")[:k]
        assert best_first(scores, k).tolist() == expected.tolist()


def test_best_first_when_most_codes_share_the_lowest_score() -> None:
    """A served label space: a few scored codes, the rest (catalogue codes no branch proposes)
    at 0; k below and above the number of scored codes."""
    rng = np.random.default_rng(4)
    scores = np.zeros(5_000, dtype=np.float32)
    scored = rng.choice(5_000, size=40, replace=False)
    scores[scored] = rng.integers(1, 6, size=40) / 10  # ties among the scored codes too
    for k in (1, 10, 39, 40, 41, 300):
        expected = np.argsort(-scores, kind="stable")[:k]
        assert best_first(scores, k).tolist() == expected.tolist()
    assert best_first(np.zeros(10, dtype=np.float32), 3).tolist() == [0, 1, 2]  # all tied
