"""What every predictor returns, and the interface the TF-IDF baseline and PLANT share.

Evaluation and the service talk to predictors only through `Predictor`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

import numpy as np


def sigmoid(logits: np.ndarray) -> np.ndarray:
    """Logistic function without overflow for large |x|: 1/(1+e^-x) = (1 + tanh(x/2)) / 2.

    float32 out: how the network's logits and the combiner's margins become scores."""
    return (0.5 * (1.0 + np.tanh(0.5 * logits.astype(np.float64)))).astype(np.float32)


def best_first(scores: np.ndarray, k: int | None = None) -> np.ndarray:
    """Indices of the `k` best scores (all when None), best first, ties by lower index.

    Equal to `np.argsort(-scores, kind="stable")[:k]` without sorting every code: a label space
    of tens of thousands of codes (catalogue codes) costs a partition, not a full sort. Most of
    such a label space shares the lowest score (no branch proposes those codes), and numpy's
    partition degrades on many equal values (7.7 ms against 0.55 ms over 91,000 codes), so only
    the codes above the lowest score are partitioned."""
    n = len(scores)
    if k is None or k >= n:
        return np.argsort(-scores, kind="stable")
    lowest = scores.min()
    higher = np.flatnonzero(scores > lowest)
    if len(higher) < k:  # every higher code, then the lowest ones by index
        ranked = higher[np.lexsort((higher, -scores[higher]))]
        return np.concatenate([ranked, np.flatnonzero(scores == lowest)[: k - len(higher)]])
    kth = np.partition(scores[higher], len(higher) - k)[len(higher) - k]  # the k-th largest
    above = np.flatnonzero(scores > kth)
    tied = np.flatnonzero(scores == kth)[: k - len(above)]  # lower indices first
    chosen = np.concatenate([above, tied])
    return chosen[np.lexsort((chosen, -scores[chosen]))]


HighlightSource = Literal["lexicon", "attention"]


@dataclass(frozen=True)
class Highlight:
    """Evidence for a code: [start, end) character offsets into the text as sent.

    `source` says what found it: a lexicon match (a phrase that named the code in training
    notes) or the network's attention. The flags say whether the span sits in a negation,
    uncertainty or family-history context (model/context.py); `weight` ranks a code's items.
    """

    start: int
    end: int
    text: str
    weight: float
    source: HighlightSource = "attention"
    negated: bool = False
    hypothetical: bool = False
    family: bool = False


@dataclass(frozen=True)
class CodePrediction:
    code: str
    description: str
    score: float  # probability in [0, 1]
    rank: int  # 1 = best
    above_threshold: bool
    highlights: tuple[Highlight, ...] = field(default=())


class Predictor(Protocol):
    """Ranks a fixed, ordered code list for a batch of notes, and says how it decides."""

    @property
    def codes(self) -> Sequence[str]: ...

    @property
    def thresholds(self) -> np.ndarray:
        """Decision threshold per code, float64 (len(codes),), as the model stores them."""
        ...

    @property
    def train_code_counts(self) -> Sequence[int]:
        """Training notes per code, in `codes` order (evaluation buckets codes by it)."""
        ...

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities, float32 (len(texts), len(codes)), columns in `codes` order."""
        ...

    def predict(self, texts: Sequence[str], top_k: int | None = None) -> list[list[CodePrediction]]:
        """Ranked codes per text, best first; `top_k=None` returns every code."""
        ...
