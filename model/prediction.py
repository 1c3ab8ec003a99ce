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
