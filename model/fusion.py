"""Fusion: per (note, candidate code) features from the lexicon, the neighbours, the code prior
and the network, scored by a small learned combiner (a gradient-boosted tree ensemble in ONNX).

Training (training/fusion.py) and serving build the features here, with the same code, so the
combiner sees at serving time exactly the features it was fitted on.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from model.lexicon import SOURCES, Match, MentionLexicon, MentionLink, links_by_code
from model.neighbours import CodeVotes, NeighbourIndex

_SOURCE_FEATURES = (
    "noisy_or", "max_weight", "matches", "log_support", "max_words", "coverage", "specificity",
)
FEATURES: tuple[str, ...] = (
    *(f"{source}_{name}" for source in SOURCES for name in _SOURCE_FEATURES),
    "category_noisy_or",
    "neighbour_score",
    "neighbour_max_similarity",
    "neighbour_count",
    "prior_log_count",
    "network_logit",
    "negated_share",
)
COMBINER_INPUT = "features"
COMBINER_OUTPUT = "margin"
NEIGHBOURS_K = 20


@dataclass(frozen=True)
class NoteSignals:
    """What the torch-free branches read in one note, before any code is scored."""

    matches: list[Match]
    votes: dict[str, CodeVotes]
    negated: frozenset[int]  # indices into `matches` of matches inside a negation scope


def _source_features(pairs: Sequence[tuple[Match, MentionLink]], code_notes: int) -> list[float]:
    """Per source: noisy-OR and best precision of the matches naming the code, how many, the
    best mention's support, the longest match, the share of the code's training notes that had
    one of these mentions (coverage), and how few codes the best mention names (specificity)."""
    if not pairs:
        return [0.0] * len(_SOURCE_FEATURES)
    weights = [link.weight for _, link in pairs]
    best = max(range(len(pairs)), key=lambda i: weights[i])
    best_match, best_link = pairs[best]
    return [
        1.0 - math.prod(1.0 - w for w in weights),
        weights[best],
        float(len(pairs)),
        math.log1p(best_link.support),
        float(max(match.n_words for match, _ in pairs)),
        max(link.hits for _, link in pairs) / code_notes if code_notes else 0.0,
        1.0 / len(best_match.links),
    ]


class FeatureBuilder:
    """Candidates and their feature rows for one note, from its `NoteSignals`."""

    def __init__(self, lexicon: MentionLexicon, neighbours: NeighbourIndex, train_counts: Mapping[str, int]) -> None:
        self.lexicon = lexicon
        self.neighbours = neighbours
        self.train_counts = train_counts

    def signals(self, text: str, negated_spans: Sequence[tuple[int, int]] = ()) -> NoteSignals:
        matches = self.lexicon.find(text)
        negated = frozenset(
            index
            for index, match in enumerate(matches)
            if any(start <= match.start and match.end <= end for start, end in negated_spans)
        )
        return NoteSignals(matches, self.neighbours.votes(text, NEIGHBOURS_K), negated)

    @staticmethod
    def candidates(signals: NoteSignals, extra: Sequence[str] = ()) -> list[str]:
        """Codes some branch proposes: lexicon matches, neighbours' codes, `extra` (network)."""
        proposed = {link.code for match in signals.matches for link in match.links}
        proposed |= set(signals.votes)
        proposed |= set(extra)
        return sorted(proposed)

    def rows(
        self,
        signals: NoteSignals,
        codes: Sequence[str],
        network_logits: Mapping[str, float] | None = None,
    ) -> np.ndarray:
        """Feature matrix float32 (len(codes), len(FEATURES)); a missing network logit is NaN."""
        index_of = {id(match): i for i, match in enumerate(signals.matches)}
        by_code = {
            source: links_by_code(m for m in signals.matches if m.source == source)
            for source in SOURCES
        }
        lexical: dict[str, float] = {}
        for source_pairs in by_code.values():
            for code, pairs in source_pairs.items():
                score = 1.0 - math.prod(1.0 - link.weight for _, link in pairs)
                lexical[code] = max(lexical.get(code, 0.0), score)
        best_in_category: dict[str, list[tuple[float, str]]] = {}
        for code, score in lexical.items():
            best_in_category.setdefault(code[:3], []).append((score, code))
        rows = np.zeros((len(codes), len(FEATURES)), dtype=np.float32)
        for row, code in enumerate(codes):
            values: list[float] = []
            all_pairs: list[tuple[Match, MentionLink]] = []
            code_notes = self.train_counts.get(code, 0)
            for source in SOURCES:
                pairs = by_code[source].get(code, [])
                all_pairs += pairs
                values += _source_features(pairs, code_notes)
            others = [s for s, other in best_in_category.get(code[:3], []) if other != code]
            votes = signals.votes.get(code)
            logit = math.nan if network_logits is None else network_logits.get(code, math.nan)
            negated = sum(1 for match, _ in all_pairs if index_of[id(match)] in signals.negated)
            values += [
                max(others, default=0.0),
                votes.score if votes else 0.0,
                votes.max_similarity if votes else 0.0,
                float(votes.count) if votes else 0.0,
                math.log1p(self.train_counts.get(code, 0)),
                logit,
                negated / len(all_pairs) if all_pairs else 0.0,
            ]
            rows[row] = values
        return rows


class Combiner:
    """The exported tree ensemble: feature rows in, a margin per row out (sigmoid: probability)."""

    def __init__(self, path: Path, threads: int | None = 1) -> None:
        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        n_features = self._session.get_inputs()[0].shape[-1]
        if isinstance(n_features, int) and n_features != len(FEATURES):
            raise ValueError(
                f"{path} reads {n_features} features, this plant-icd builds {len(FEATURES)}: "
                "re-export the bundle"
            )

    def margins(self, rows: np.ndarray) -> np.ndarray:
        """float32 (R,) for rows float32 (R, F)."""
        if len(rows) == 0:
            return np.zeros(0, dtype=np.float32)
        (out,) = self._session.run([COMBINER_OUTPUT], {COMBINER_INPUT: rows.astype(np.float32)})
        return np.asarray(out, dtype=np.float32).reshape(-1)
