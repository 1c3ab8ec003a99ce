"""Projecting Spanish evidence spans onto the English machine translation of the same note.

CodiEsp's X offsets point into the Spanish text; the English text is one translated sentence per
line. Sentences are aligned by length (Gale & Church 1993, dynamic programming over 1-1, 1-2, 2-1,
1-0 and 0-1 beads), words by Dice co-occurrence over the aligned sentence pairs of the training
and background notes, or by spelling where the two are cognates ("brucelosis"/"brucellosis").
Each span then becomes the English phrase of its aligned sentence that best covers its words.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace

from model.text import FUNCTION_WORDS, Word, words
from training.corpora.base import Document, EvidenceSpan

_SENTENCE = re.compile(r"[^.!?\n]+(?:[.!?]+|\n|$)")
MIN_DICE = 0.2
MIN_COGNATE = 0.5
MIN_SCORE = 0.35

Bead = tuple[list[int], list[int]]  # Spanish sentence indices, English line indices


def sentence_spans(text: str) -> list[tuple[int, int]]:
    """[start, end) of each sentence. Used for both texts: the English reader joins the
    translation's lines with single spaces, so its lines are recovered from sentence ends."""
    return [(m.start(), m.end()) for m in _SENTENCE.finditer(text) if m.group().strip()]


def align_sentences(source: Sequence[int], target: Sequence[int]) -> list[Bead]:
    """Gale-Church alignment of two sequences of sentence lengths (characters)."""
    ratio = (sum(target) or 1) / (sum(source) or 1)
    beads = ((1, 1, 0.0), (1, 2, 2.3), (2, 1, 2.3), (1, 0, 4.5), (0, 1, 4.5))
    n, m = len(source), len(target)
    cost = [[math.inf] * (m + 1) for _ in range(n + 1)]
    back: list[list[tuple[int, int] | None]] = [[None] * (m + 1) for _ in range(n + 1)]
    cost[0][0] = 0.0
    for i in range(n + 1):
        for j in range(m + 1):
            if cost[i][j] == math.inf:
                continue
            for di, dj, penalty in beads:
                if i + di > n or j + dj > m:
                    continue
                length_s = sum(source[i : i + di])
                length_t = sum(target[j : j + dj])
                mismatch = abs(length_t - ratio * length_s) / math.sqrt(
                    max(1.0, (length_s + length_t / max(ratio, 1e-6)) / 2)
                )
                total = cost[i][j] + penalty + mismatch
                if total < cost[i + di][j + dj]:
                    cost[i + di][j + dj] = total
                    back[i + di][j + dj] = (di, dj)
    path: list[Bead] = []
    i, j = n, m
    while i > 0 or j > 0:
        step = back[i][j]
        if step is None:  # unreachable: keep the rest as one bead
            path.append((list(range(i)), list(range(j))))
            break
        di, dj = step
        path.append((list(range(i - di, i)), list(range(j - dj, j))))
        i, j = i - di, j - dj
    return path[::-1]


def _content(tokens: Sequence[str]) -> set[str]:
    return {t for t in tokens if t not in FUNCTION_WORDS and len(t) >= 3 and not t.isdigit()}


def _trigrams(word: str) -> set[str]:
    padded = f"#{word}#"
    return {padded[i : i + 3] for i in range(len(padded) - 2)}


def cognate_similarity(left: str, right: str) -> float:
    """Dice of character trigrams: high for cognates such as 'hipertension'/'hypertension'."""
    a, b = _trigrams(left), _trigrams(right)
    return 2 * len(a & b) / (len(a) + len(b))


@dataclass
class WordTranslator:
    """Word similarity across the two languages from aligned sentence pairs."""

    pair_counts: Counter[tuple[str, str]]
    source_counts: Counter[str]
    target_counts: Counter[str]

    @classmethod
    def fit(cls, pairs: Sequence[tuple[Sequence[str], Sequence[str]]]) -> WordTranslator:
        pair_counts: Counter[tuple[str, str]] = Counter()
        source_counts: Counter[str] = Counter()
        target_counts: Counter[str] = Counter()
        for source, target in pairs:
            s, t = _content(source), _content(target)
            source_counts.update(s)
            target_counts.update(t)
            pair_counts.update((a, b) for a in s for b in t)
        return cls(pair_counts, source_counts, target_counts)

    def similarity(self, source: str, target: str) -> float:
        together = self.pair_counts.get((source, target), 0)
        dice = 0.0
        if together >= 2:
            dice = 2 * together / (self.source_counts[source] + self.target_counts[target])
        cognate = cognate_similarity(source, target)
        return max(dice if dice >= MIN_DICE else 0.0, cognate if cognate >= MIN_COGNATE else 0.0)


def sentence_beads(
    spanish: Document, english: Document
) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """Aligned ([start, end) in Spanish, [start, end) in English) segments of one note."""
    source = sentence_spans(spanish.text)
    target = sentence_spans(english.text)
    beads = align_sentences([e - s for s, e in source], [e - s for s, e in target])
    segments = []
    for source_ids, target_ids in beads:
        if source_ids and target_ids:
            segments.append(
                (
                    (source[source_ids[0]][0], source[source_ids[-1]][1]),
                    (target[target_ids[0]][0], target[target_ids[-1]][1]),
                )
            )
    return segments


def fit_translator(pairs: Sequence[tuple[Document, Document]]) -> WordTranslator:
    """Word similarities from the aligned sentences of (Spanish, English) versions of notes."""
    sentence_pairs = []
    for spanish, english in pairs:
        for (s0, s1), (t0, t1) in sentence_beads(spanish, english):
            sentence_pairs.append(
                (
                    [w.text for w in words(spanish.text[s0:s1])],
                    [w.text for w in words(english.text[t0:t1])],
                )
            )
    return WordTranslator.fit(sentence_pairs)


def best_phrase(
    span_words: Sequence[str], segment: Sequence[Word], translator: WordTranslator
) -> tuple[int, int, float] | None:
    """The contiguous words of `segment` that best cover `span_words`: (first, stop, score)."""
    content = [w for w in span_words if w not in FUNCTION_WORDS and not w.isdigit()]
    wanted = content or list(span_words)
    if not wanted or not segment:
        return None
    similarity = [[translator.similarity(a, w.text) for w in segment] for a in wanted]
    best: tuple[int, int, float] | None = None
    longest = len(span_words) + 3
    for first in range(len(segment)):
        if not any(row[first] for row in similarity):
            continue  # a phrase starts on an aligned word
        for stop in range(first + 1, min(first + longest, len(segment)) + 1):
            if not any(row[stop - 1] for row in similarity):
                continue  # ... and ends on one
            covered = sum(max(row[first:stop]) for row in similarity) / len(wanted)
            spare = sum(
                1
                for k in range(first, stop)
                if segment[k].text not in FUNCTION_WORDS and not any(row[k] for row in similarity)
            )
            score = covered - 0.1 * spare
            if best is None or score > best[2]:
                best = (first, stop, score)
    return best if best is not None and best[2] >= MIN_SCORE else None


def project_spans(spanish: Document, english: Document, translator: WordTranslator) -> Document:
    """`english` with the Spanish note's evidence spans projected onto it (unprojectable ones
    are left out)."""
    segments = sentence_beads(spanish, english)
    english_words = words(english.text)
    projected: list[EvidenceSpan] = []
    for span in spanish.spans:
        segment = next((target for (s0, s1), target in segments if s0 <= span.start < s1), None)
        if segment is None:
            continue
        t0, t1 = segment
        segment_words = [w for w in english_words if t0 <= w.start and w.end <= t1]
        span_words = [w.text for w in words(spanish.text[span.start : span.end])]
        found = best_phrase(span_words, segment_words, translator)
        if found is not None:
            first, stop, _ = found
            projected.append(
                replace(span, start=segment_words[first].start, end=segment_words[stop - 1].end)
            )
    return replace(english, spans=tuple(projected))
