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

from model.bundle import Bundle, BundleError
from model.context import ContextFlags, ContextRules
from model.lexicon import SOURCES, Match, MentionLexicon, MentionLink, links_by_code, noisy_or
from model.neighbours import CodeVotes, NeighbourIndex
from model.prediction import Highlight, sigmoid

_SOURCE_FEATURES = (
    "noisy_or",
    "max_weight",
    "matches",
    "log_support",
    "max_words",
    "coverage",
    "specificity",
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
    "hypothetical_share",
    "family_share",
)
LEXICON_FILE = "lexicon.json"
NEIGHBOURS_FILE = "neighbours.npz"
COMBINER_FILE = "combiner.onnx"
COMBINER_INPUT = "features"
COMBINER_OUTPUT = "margin"
NEIGHBOURS_K = 20
# Codes only the neighbours propose that a bundle whose combiner does not read the network still
# has decoded, for their attention evidence (FusedScorer.candidate_columns).
NEIGHBOUR_ATTENTION_CODES = 20
# Which lexicon source makes the better first evidence item (FusedScorer.evidence): the coders'
# own spans, then catalogue titles, then mined n-grams.
EVIDENCE_PRIORITY = {"evidence": 0, "catalogue": 1, "partial": 2, "mined": 3}


@dataclass(frozen=True)
class NoteSignals:
    """What the torch-free branches read in one note, before any code is scored."""

    matches: list[Match]
    flags: list[ContextFlags]  # one per match: negation, uncertainty, family history around it
    votes: dict[str, CodeVotes]


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
        noisy_or(weights),
        weights[best],
        float(len(pairs)),
        math.log1p(best_link.support),
        float(max(match.n_words for match, _ in pairs)),
        max(link.hits for _, link in pairs) / code_notes if code_notes else 0.0,
        1.0 / len(best_match.links),
    ]


class FeatureBuilder:
    """Candidates and their feature rows for one note, from its `NoteSignals`."""

    def __init__(
        self,
        lexicon: MentionLexicon,
        neighbours: NeighbourIndex,
        train_counts: Mapping[str, int],
        context: ContextRules | None = None,
    ) -> None:
        self.lexicon = lexicon
        self.neighbours = neighbours
        self.train_counts = train_counts
        self.context = context

    def signals(self, text: str) -> NoteSignals:
        matches = self.lexicon.find(text)
        if self.context is None or not matches:
            flags = [ContextFlags() for _ in matches]
        else:
            note_context = self.context.read(text)
            flags = [note_context.flags(match.start, match.end) for match in matches]
        return NoteSignals(matches, flags, self.neighbours.votes(text, NEIGHBOURS_K))

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
        flags_of = {
            id(match): flags for match, flags in zip(signals.matches, signals.flags, strict=True)
        }
        by_code = {
            source: links_by_code(m for m in signals.matches if m.source == source)
            for source in SOURCES
        }
        lexical: dict[str, float] = {}
        for source_pairs in by_code.values():
            for code, pairs in source_pairs.items():
                score = noisy_or(link.weight for _, link in pairs)
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
            flagged = [flags_of[id(match)] for match, _ in all_pairs]
            share = 1.0 / len(flagged) if flagged else 0.0
            values += [
                max(others, default=0.0),
                votes.score if votes else 0.0,
                votes.max_similarity if votes else 0.0,
                float(votes.count) if votes else 0.0,
                math.log1p(self.train_counts.get(code, 0)),
                logit,
                share * sum(flags.negated for flags in flagged),
                share * sum(flags.hypothetical for flags in flagged),
                share * sum(flags.family for flags in flagged),
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


class FusedScorer:
    """The fused model of a bundle: branches and combiner, scoring the bundle's whole label space.

    Candidates (codes a branch proposes) get the combiner's probability. Every other code ranks
    below them all, in the network's order, so the ranking stays complete.
    """

    def __init__(
        self, bundle: Bundle, threads: int | None = 1, *, context_rules: bool = True
    ) -> None:
        metadata = bundle.metadata
        if metadata.fusion is None:
            raise ValueError(f"{bundle.directory} has no fused model")
        info = metadata.fusion
        if list(info["features"]) != list(FEATURES):
            raise BundleError(
                f"{bundle.directory} was fitted on features {info['features']}, this plant-icd "
                f"builds {list(FEATURES)}: re-export the bundle"
            )
        codes = [entry["code"] for entry in metadata.codes]
        counts = dict(zip(codes, metadata.train_code_counts, strict=True))
        language = info["context_language"]
        self._builder = FeatureBuilder(
            MentionLexicon.load(bundle.fusion_file(LEXICON_FILE)),
            NeighbourIndex.load(bundle.fusion_file(NEIGHBOURS_FILE)),
            {code: count for code, count in counts.items() if count},
            ContextRules.for_language(language) if language and context_rules else None,
        )
        self._combiner = Combiner(bundle.fusion_file(COMBINER_FILE), threads)
        self._codes = codes
        self._index = {code: column for column, code in enumerate(codes)}
        self._n_network = metadata.n_network_codes
        self._network_candidates = int(info["network_candidates"])
        self._uses_network = bool(info["uses_network"])

    def signals(self, text: str) -> NoteSignals:
        """What the lexicon, context rules and neighbours read in one note."""
        return self._builder.signals(text)

    def candidate_columns(self, signals: NoteSignals) -> np.ndarray:
        """The network columns (int64, ascending) the runtime has the graph decode for a note
        whatever its first stage says.

        A combiner that reads the network gets every candidate's decoded logit, as it was fitted
        on. One that does not only needs decoding for attention evidence, which a code the lexicon
        names already has: then only the neighbours' strongest other codes are forced."""
        codes = self._builder.candidates(signals)
        if not self._uses_network:
            named = {link.code for match in signals.matches for link in match.links}
            voted = [(votes.score, code) for code, votes in signals.votes.items()]
            codes = [code for _, code in sorted(voted, reverse=True) if code not in named]
            codes = codes[:NEIGHBOUR_ATTENTION_CODES]
        columns = [self._index.get(code, -1) for code in codes]
        return np.array(sorted(c for c in columns if 0 <= c < self._n_network), dtype=np.int64)

    def score(
        self, text: str, logits: np.ndarray, signals: NoteSignals | None = None
    ) -> tuple[np.ndarray, NoteSignals]:
        """Probabilities float32 (C,) for one note from its network logits (C_network,);
        `signals` where the caller has read the note already (`signals`)."""
        if signals is None:
            signals = self._builder.signals(text)
        extra: list[str] = []
        if self._network_candidates:
            top = np.argsort(-logits, kind="stable")[: self._network_candidates]
            extra = [self._codes[column] for column in top.tolist()]
        candidates = [
            code for code in self._builder.candidates(signals, extra) if code in self._index
        ]
        columns = np.array([self._index[code] for code in candidates], dtype=np.int64)
        network = None
        if self._uses_network:
            network = {
                code: float(logits[column])
                for code, column in zip(candidates, columns.tolist(), strict=True)
                if column < self._n_network
            }
        fused = sigmoid(self._combiner.margins(self._builder.rows(signals, candidates, network)))
        floor = float(fused.min()) if len(fused) else 1.0
        scores = np.zeros(len(self._codes), dtype=np.float32)  # (C,)
        # Below every candidate, in the network's order: half the lowest candidate's score.
        scores[: self._n_network] = 0.5 * floor * sigmoid(logits)
        scores[columns] = fused
        return scores, signals

    @staticmethod
    def evidence(signals: NoteSignals, text: str) -> dict[str, list[Highlight]]:
        """Per code, the lexicon matches that name it, with their context flags, best first; one
        item per span (the same phrase from two sources keeps its best weight).

        Best first: phrases coders marked in training notes, then catalogue titles, then mined
        n-grams (words that co-occur with the code, such as a section heading, are weaker
        evidence however precise); heaviest first within each, then in text order."""
        best: dict[str, dict[tuple[int, int], Highlight]] = {}
        priority: dict[tuple[str, int, int], int] = {}
        for match, flags in zip(signals.matches, signals.flags, strict=True):
            rank = EVIDENCE_PRIORITY.get(match.source, len(EVIDENCE_PRIORITY))
            for link in match.links:
                items = best.setdefault(link.code, {})
                key = (match.start, match.end)
                where = (link.code, *key)
                priority[where] = min(priority.get(where, rank), rank)
                if key in items and items[key].weight >= link.weight:
                    continue
                items[key] = Highlight(
                    start=match.start,
                    end=match.end,
                    text=text[match.start : match.end],
                    weight=link.weight,
                    source="lexicon",
                    negated=flags.negated,
                    hypothetical=flags.hypothetical,
                    family=flags.family,
                )
        ordered: dict[str, list[Highlight]] = {}
        for code, items in best.items():
            ranked = sorted(
                (priority[(code, *key)], -item.weight, item.start, item.end, item)
                for key, item in items.items()
            )
            ordered[code] = [item for *_, item in ranked]
        return ordered
