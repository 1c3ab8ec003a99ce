"""Evidence highlights: from one code's attention over a note's tokens to phrase-level spans.

Pure numpy. Rules: keep the `max_tokens` heaviest tokens whose weight is at least `min_ratio` x the
heaviest; snap each to the whole word it lies in; join words into phrases across short gaps that
hold no punctuation, line break or conjunction; cap a phrase's length in words.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from model.prediction import Highlight

DEFAULT_MAX_TOKENS = 8
DEFAULT_MIN_RATIO = 0.1
DEFAULT_MAX_GAP_WORDS = 2  # "estenosis [en la] unión": Spanish noun phrases carry prepositions
DEFAULT_MAX_PHRASE_WORDS = 8

# A word: letters and digits (with combining accents of decomposed text), joined by an inner
# apostrophe or hyphen ("doesn't", "vésico-ureteral"), so "'t" or "-ureteral" is never shown alone.
_LETTERS = r"(?:[^\W_]|[\u0300-\u036f])+"
_WORD = re.compile(rf"{_LETTERS}(?:['’\-]{_LETTERS})*")
# Coordinating conjunctions join two findings, not one: a phrase never bridges them.
_CONJUNCTIONS = frozenset({"y", "e", "o", "u", "ni", "and", "or", "nor", "but", "pero"})


@dataclass
class _Span:
    start: int
    end: int
    weight: float


def word_spans(text: str) -> list[tuple[int, int]]:
    """[start, end) of every word of `text`, in order (what highlights snap to)."""
    return [match.span() for match in _WORD.finditer(text)]


def _snap_to_words(tokens: list[_Span], words: Sequence[tuple[int, int]]) -> list[_Span]:
    """Each token's weight moved to the word(s) it overlaps; tokens touching no word (lone
    punctuation) are dropped. Returns one span per word hit, in text order."""
    word_ends = [end for _, end in words]
    by_word: dict[int, _Span] = {}
    for token in tokens:
        index = bisect_right(word_ends, token.start)  # first word ending after the token starts
        hit = []
        while index < len(words) and words[index][0] < token.end:
            hit.append(index)
            index += 1
        for word_index in hit:
            start, end = words[word_index]
            span = by_word.setdefault(word_index, _Span(start, end, 0.0))
            span.weight += token.weight / len(hit)
    return [by_word[index] for index in sorted(by_word)]


def _bridgeable(gap: str, max_gap_words: int) -> bool:
    """Whether two spans separated by `gap` read as one phrase."""
    if "\n" in gap:
        return False
    gap_words = _WORD.findall(gap)
    if len(gap_words) > max_gap_words:
        return False
    if any(word.casefold() in _CONJUNCTIONS for word in gap_words):
        return False
    # Only white space and words in between: any punctuation (a comma, a full stop, a bracket)
    # separates two pieces of evidence.
    return not _WORD.sub("", gap).strip()


def _join_phrases(
    units: list[_Span], text: str, max_gap_words: int, max_phrase_words: int
) -> list[_Span]:
    """Units in text order joined into phrases (the rules in `extract_highlights`)."""
    phrases: list[_Span] = []
    for unit in units:
        last = phrases[-1] if phrases else None
        if last is not None and unit.start <= last.end:  # overlapping or touching pieces
            last.end = max(last.end, unit.end)
            last.weight += unit.weight
        elif (
            last is not None
            and _bridgeable(text[last.end : unit.start], max_gap_words)
            and len(_WORD.findall(text, last.start, unit.end)) <= max_phrase_words
        ):
            last.end = unit.end
            last.weight += unit.weight
        else:
            phrases.append(_Span(unit.start, unit.end, unit.weight))
    return phrases


def extract_highlights(
    weights: np.ndarray,
    offsets: np.ndarray,
    text: str,
    *,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    min_ratio: float = DEFAULT_MIN_RATIO,
    expand_to_words: bool = True,
    max_gap_words: int = DEFAULT_MAX_GAP_WORDS,
    max_phrase_words: int = DEFAULT_MAX_PHRASE_WORDS,
    words: Sequence[tuple[int, int]] | None = None,
) -> list[Highlight]:
    """Character spans of the evidence for one code, heaviest first (ties: earlier first).

    weights: float (T,), the code's attention over the tokens that were read; offsets: int (T, 2),
    [start, end) into `text`. Decisions:
    - With `expand_to_words`, a selected token stands for the whole word it lies in, so a
      reviewer sees "gastritis", not "itis", and "doesn't", not "'t". A token of punctuation
      alone is never evidence. Without it, the selected tokens' own spans are used.
    - Selected words join into one phrase when at most `max_gap_words` unselected words lie
      between them and the gap holds no punctuation, line break or coordinating conjunction
      ("y", "and", ...): "estenosis en la unión" is one finding, "fiebre y tos" two, and
      "fever, cough" two. Neighbouring selected tokens always join (a word's subword pieces).
    - A phrase holds at most `max_phrase_words` words; a longer run starts a new phrase.
    - A phrase's weight is the SUM of its selected tokens' weights: its share of the attention
      mass, so a phrase outranks one of its own words. Bridged words add no weight.
    Tokens with zero, negative or non-finite weight, or an empty span, are never evidence.
    `words` is `word_spans(text)` where the caller has it (one note's highlights for several
    codes: the note's words are found once, not once per code).
    """
    weights = np.asarray(weights, dtype=np.float64).reshape(-1)  # (T,)
    offsets = np.asarray(offsets, dtype=np.int64).reshape(-1, 2)  # (T, 2)
    if weights.shape[0] != offsets.shape[0]:
        raise ValueError(
            f"{weights.shape[0]} attention weights for {offsets.shape[0]} token offsets"
        )
    if max_tokens < 1 or not 0.0 <= min_ratio <= 1.0:
        raise ValueError("max_tokens must be >= 1 and min_ratio in [0, 1]")
    if max_gap_words < 0 or max_phrase_words < 1:
        raise ValueError("max_gap_words must be >= 0 and max_phrase_words >= 1")
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
    selected = [
        _Span(int(offsets[index, 0]), int(offsets[index, 1]), float(weights[index]))
        for index in np.sort(heaviest).tolist()
    ]
    if expand_to_words:
        units = _snap_to_words(selected, word_spans(text) if words is None else words)
    else:
        units = selected

    phrases = _join_phrases(units, text, max_gap_words, max_phrase_words)
    phrases.sort(key=lambda span: (-span.weight, span.start))
    return [
        Highlight(
            start=span.start, end=span.end, text=text[span.start : span.end], weight=span.weight
        )
        for span in phrases
    ]


def merge_evidence(
    lexicon: Sequence[Highlight], attention: Sequence[Highlight], limit: int | None = None
) -> list[Highlight]:
    """One ranked evidence list for a code: lexicon matches first, in the order given (a phrase
    that named the code in training notes is what a coder marks; `model.lexicon_evidence` orders
    them), then the attention phrases that overlap none of them."""
    ranked = list(lexicon)
    for item in attention:
        if not any(item.start < other.end and other.start < item.end for other in ranked):
            ranked.append(item)
    return ranked[:limit] if limit is not None else ranked
