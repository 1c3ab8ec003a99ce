"""Nearest training notes by TF-IDF cosine over folded words and word pairs, numpy only.

The index is an inverted list (term -> notes, weights) so a query costs the postings of the
note's own terms, not the size of the training set. Each training note keeps its gold codes: the
neighbours' codes, weighted by similarity, are a feature and a source of candidates.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import numpy as np

from model.text import word_texts


def note_terms(text: str) -> Counter[str]:
    """Term counts of a note: folded words and adjacent word pairs."""
    tokens = word_texts(text)
    terms = Counter(tokens)
    terms.update(f"{left} {right}" for left, right in pairwise(tokens))
    return terms


def _unit(weights: np.ndarray) -> np.ndarray:
    norm = float(np.linalg.norm(weights))
    return weights / norm if norm > 0 else weights


@dataclass(frozen=True)
class CodeVotes:
    """What a note's nearest training notes say about one code."""

    score: float  # similarity-weighted share of the neighbours that carry the code
    max_similarity: float
    count: int


class NeighbourIndex:
    """TF-IDF (sublinear tf, smoothed idf, unit length) inverted index over training notes."""

    def __init__(
        self,
        terms: Sequence[str],
        idf: np.ndarray,  # (V,) float32
        pointers: np.ndarray,  # (V+1,) int64, postings of term t at [pointers[t], pointers[t+1])
        postings_note: np.ndarray,  # (P,) int32
        postings_weight: np.ndarray,  # (P,) float32
        codes: Sequence[str],
        note_code_pointers: np.ndarray,  # (N+1,) int64
        note_code_ids: np.ndarray,  # (Q,) int32, indices into `codes`
    ) -> None:
        self._term_ids = {term: index for index, term in enumerate(terms)}
        self._terms = list(terms)
        self._idf = idf.astype(np.float32)
        self._pointers = pointers.astype(np.int64)
        self._postings_note = postings_note.astype(np.int32)
        self._postings_weight = postings_weight.astype(np.float32)
        self._codes = list(codes)
        self._note_code_pointers = note_code_pointers.astype(np.int64)
        self._note_code_ids = note_code_ids.astype(np.int32)

    @property
    def n_notes(self) -> int:
        return len(self._note_code_pointers) - 1

    @classmethod
    def build(
        cls, texts: Sequence[str], note_codes: Sequence[Sequence[str]], min_notes: int = 2
    ) -> NeighbourIndex:
        """Index `texts`; terms in fewer than `min_notes` notes are dropped (they match nothing)."""
        counts = [note_terms(text) for text in texts]
        document_frequency: Counter[str] = Counter()
        for terms in counts:
            document_frequency.update(terms.keys())
        vocabulary = sorted(t for t, df in document_frequency.items() if df >= min_notes)
        term_ids = {term: index for index, term in enumerate(vocabulary)}
        n_notes = len(texts)
        df = np.array([document_frequency[t] for t in vocabulary], dtype=np.float64)
        idf = (np.log((1 + n_notes) / (1 + df)) + 1).astype(np.float32)
        postings: list[list[tuple[int, float]]] = [[] for _ in vocabulary]
        for note, terms in enumerate(counts):
            ids = np.array([term_ids[t] for t in terms if t in term_ids], dtype=np.int64)
            tf = np.array([terms[t] for t in terms if t in term_ids], dtype=np.float64)
            weights = _unit((1 + np.log(tf)) * idf[ids]) if len(ids) else tf
            for term, weight in zip(ids.tolist(), weights.tolist(), strict=True):
                postings[term].append((note, weight))
        pointers = np.cumsum([0] + [len(p) for p in postings]).astype(np.int64)
        flat = [entry for term_postings in postings for entry in term_postings]
        code_list = sorted({code for codes in note_codes for code in codes})
        code_ids = {code: index for index, code in enumerate(code_list)}
        return cls(
            vocabulary,
            idf,
            pointers,
            np.array([note for note, _ in flat], dtype=np.int32),
            np.array([weight for _, weight in flat], dtype=np.float32),
            code_list,
            np.cumsum([0] + [len(codes) for codes in note_codes]).astype(np.int64),
            np.array([code_ids[c] for codes in note_codes for c in codes], dtype=np.int32),
        )

    def similarities(self, text: str) -> np.ndarray:
        """Cosine similarity of `text` to every training note, float32 (N,)."""
        terms = note_terms(text)
        known = [(self._term_ids[t], n) for t, n in terms.items() if t in self._term_ids]
        scores = np.zeros(self.n_notes, dtype=np.float32)
        if not known:
            return scores
        ids = np.array([term for term, _ in known], dtype=np.int64)
        query = _unit(
            (1 + np.log(np.array([n for _, n in known], dtype=np.float64))) * self._idf[ids]
        )
        starts, stops = self._pointers[ids], self._pointers[ids + 1]
        lengths = stops - starts
        positions = np.repeat(stops - lengths.cumsum(), lengths) + np.arange(lengths.sum())
        weights = self._postings_weight[positions] * np.repeat(query, lengths)
        scores += np.bincount(
            self._postings_note[positions], weights=weights, minlength=self.n_notes
        ).astype(np.float32)
        return scores

    def votes(self, text: str, k: int = 20) -> dict[str, CodeVotes]:
        """The codes of the `k` most similar training notes, with their similarity votes."""
        similarity = self.similarities(text)
        k = min(k, self.n_notes)
        nearest = np.argpartition(-similarity, k - 1)[:k] if k else np.array([], dtype=np.int64)
        nearest = nearest[similarity[nearest] > 0]
        if not len(nearest):
            return {}
        total = float(similarity[nearest].sum())
        # Every neighbour's codes, neighbour after neighbour, each with its neighbour's similarity
        # (float64: the sums below add in this order, as a loop over the neighbours would).
        starts = self._note_code_pointers[nearest]
        lengths = self._note_code_pointers[nearest + 1] - starts
        offsets = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        codes = self._note_code_ids[np.repeat(starts, lengths) + offsets]
        similarities = np.repeat(similarity[nearest].astype(np.float64), lengths)
        score = np.bincount(codes, weights=similarities, minlength=len(self._codes))
        count = np.bincount(codes, minlength=len(self._codes))
        best = np.zeros(len(self._codes), dtype=np.float64)
        np.maximum.at(best, codes, similarities)
        voted, first = np.unique(codes, return_index=True)
        voted = voted[np.argsort(first, kind="stable")]  # in the order the neighbours name them
        return {
            self._codes[code]: CodeVotes(value / total, top, n)
            for code, value, top, n in zip(
                voted.tolist(),
                score[voted].tolist(),
                best[voted].tolist(),
                count[voted].tolist(),
                strict=True,
            )
        }

    # -- the bundle artefact --------------------------------------------------------------------

    def save(self, path: Path) -> None:
        with path.open("wb") as stream:
            np.savez_compressed(
                stream,
                terms=np.array(self._terms, dtype=np.str_),
                idf=self._idf,
                pointers=self._pointers,
                postings_note=self._postings_note,
                postings_weight=self._postings_weight,
                codes=np.array(self._codes, dtype=np.str_),
                note_code_pointers=self._note_code_pointers,
                note_code_ids=self._note_code_ids,
            )

    @classmethod
    def load(cls, path: Path) -> NeighbourIndex:
        with np.load(path, allow_pickle=False) as arrays:
            return cls(
                arrays["terms"].tolist(),
                arrays["idf"],
                arrays["pointers"],
                arrays["postings_note"],
                arrays["postings_weight"],
                arrays["codes"].tolist(),
                arrays["note_code_pointers"],
                arrays["note_code_ids"],
            )
