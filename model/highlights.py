"""Evidence highlights: from one code's attention over a note's tokens to character spans.

Pure numpy. Rules: keep the `max_tokens` heaviest tokens whose weight is at least `min_ratio` x the
heaviest; merge tokens that are neighbours in token order; widen a span to whole words.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

import numpy as np

from model.prediction import Highlight

DEFAULT_MAX_TOKENS = 8
DEFAULT_MIN_RATIO = 0.1


@dataclass
class _Span:
    start: int
    end: int
    weight: float


def _is_word_char(char: str) -> bool:
    # Letters, digits and combining marks (a decomposed accent belongs to its letter).
    return char.isalnum() or unicodedata.category(char).startswith("M")


def _widen_to_word(text: str, start: int, end: int) -> tuple[int, int]:
    while start > 0 and _is_word_char(text[start - 1]) and _is_word_char(text[start]):
        start -= 1
    while end < len(text) and _is_word_char(text[end]) and _is_word_char(text[end - 1]):
        end += 1
    return start, end


def extract_highlights(
    weights: np.ndarray,
    offsets: np.ndarray,
    text: str,
    *,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    min_ratio: float = DEFAULT_MIN_RATIO,
    expand_to_words: bool = True,
) -> list[Highlight]:
    """Character spans of the evidence for one code, heaviest first (ties: earlier first).

    weights: float (T,), the code's attention over the tokens that were read; offsets: int (T, 2),
    [start, end) into `text`. Decisions:
    - Tokens neighbouring in token order merge into one span (a word's subword pieces, a phrase).
      Tokens separated by an unselected token (even a comma) stay apart: bridging would claim
      evidence the model did not weigh.
    - With `expand_to_words`, a span that cuts a word is widened to the whole word, so a reviewer
      sees "gastritis", not "itis"; spans that then overlap or touch merge.
    - A span's weight is the SUM of its selected tokens' weights: its share of the attention mass,
      so a phrase outranks one of its own words. Characters added by widening add no weight.
    Tokens with zero, negative or non-finite weight, or an empty span, are never evidence.
    """
    weights = np.asarray(weights, dtype=np.float64).reshape(-1)  # (T,)
    offsets = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)  # (T, 2)
    if weights.shape[0] != offsets.shape[0]:
        raise ValueError(
            f"{weights.shape[0]} attention weights for {offsets.shape[0]} token offsets"
        )
    if max_tokens < 1 or not 0.0 <= min_ratio <= 1.0:
        raise ValueError("max_tokens must be >= 1 and min_ratio in [0, 1]")
    if weights.shape[0] == 0:
        return []
    if offsets.min() < 0 or offsets.max() > len(text):
        raise ValueError("token offsets fall outside the text: were they computed for this text?")

    usable = np.isfinite(weights) & (weights > 0) & (offsets[:, 1] > offsets[:, 0])  # (T,)
    if not usable.any():
        return []
    peak = weights[usable].max()
    candidates = np.flatnonzero(usable & (weights >= min_ratio * peak))
    # Heaviest first; a stable sort keeps the earlier token on equal weights.
    heaviest = candidates[np.argsort(-weights[candidates], kind="stable")][:max_tokens]
    selected = np.sort(heaviest)

    spans: list[_Span] = []
    previous = -2
    for index in selected.tolist():
        start, end = int(offsets[index, 0]), int(offsets[index, 1])
        weight = float(weights[index])
        if spans and index == previous + 1:
            last = spans[-1]
            last.start, last.end = min(last.start, start), max(last.end, end)
            last.weight += weight
        else:
            spans.append(_Span(start, end, weight))
        previous = index

    if expand_to_words:
        widened: list[_Span] = []
        for span in spans:
            start, end = _widen_to_word(text, span.start, span.end)
            if widened and start <= widened[-1].end:
                widened[-1].end = max(widened[-1].end, end)
                widened[-1].weight += span.weight
            else:
                widened.append(_Span(start, end, span.weight))
        spans = widened

    spans.sort(key=lambda span: (-span.weight, span.start))
    return [
        Highlight(
            start=span.start, end=span.end, text=text[span.start : span.end], weight=span.weight
        )
        for span in spans
    ]
