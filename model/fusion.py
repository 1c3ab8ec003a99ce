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
from model.prediction import sigmoid
from model.text import Word, lexicon_words

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
# Codes only the neighbours propose that a bundle whose combiner takes the network's top codes as
# candidates without reading its logit still has decoded, for their attention evidence
# (FusedScorer.candidate_columns).
NEIGHBOUR_ATTENTION_CODES = 20
_NEGATED_SHARE = FEATURES.index("negated_share")


def demote_negated_only(probabilities: np.ndarray, rows: np.ndarray, factor: float) -> np.ndarray:
    """`probabilities` (K,) of candidates with feature `rows` (K, F), those whose every lexicon
    match is negated ("denies chest pain") scaled by `factor`: a code a note rules out ranks
    below the codes it affirms. Candidates no lexicon match names have no negated share and
    keep their probability."""
    if factor == 1.0:
        return probabilities
    negated_only = rows[:, _NEGATED_SHARE] >= 1.0  # (K,)
    return np.where(negated_only, probabilities * np.float32(factor), probabilities)


@dataclass(frozen=True)
class NoteProposals:
    """The first half of what the torch-free branches read in a note: the lexicon's matches and
    the neighbours' votes, enough to name the note's candidates (so the runtime can have the
    graph decode them) before the context rules and evidence spans run
    (`FeatureBuilder.signals`)."""

    words: list[Word]  # `model.text.lexicon_words` of the note
    matches: list[Match]
    votes: dict[str, CodeVotes]


@dataclass(frozen=True)
class NoteSignals:
    """What the torch-free branches read in one note, before any code is scored."""

    matches: list[Match]
    flags: list[ContextFlags]  # one per match: negation, uncertainty, family history around it
    votes: dict[str, CodeVotes]
    # One per match: the [start, end) its evidence item shows (`MentionLexicon.evidence_span`,
    # the match snapped to the phrase a coder would mark); None: the matches' own spans.
    spans: list[tuple[int, int]] | None = None

    def evidence_spans(self) -> list[tuple[int, int]]:
        if self.spans is not None:
            return self.spans
        return [(match.start, match.end) for match in self.matches]


@dataclass(frozen=True)
class CandidateScores:
    """The combiner's answer for one note: its candidates' label-space columns and probabilities."""

    columns: np.ndarray  # (K,) int64
    probabilities: np.ndarray  # (K,) float32


@dataclass(frozen=True)
class CandidateRows:
    """One note's candidates before the combiner: label-space columns and feature rows."""

    columns: np.ndarray  # (K,) int64
    rows: np.ndarray  # (K, len(FEATURES)) float32


def _source_features(pairs: Sequence[tuple[Match, MentionLink]], code_notes: int) -> list[float]:
    """Per source: noisy-OR and best precision of the matches naming the code, how many, the
    best mention's support, the longest match, the share of the code's training notes that had
    one of these mentions (coverage), and how few codes the best mention names (specificity).

    One pass over the pairs (a note names a few hundred (code, source) pairs, each scored here)."""
    if not pairs:
        return [0.0] * len(_SOURCE_FEATURES)
    best_match, best_link = pairs[0]
    unmatched = 1.0  # product of (1 - weight): noisy-OR's complement, as `noisy_or` multiplies
    longest = hits = 0
    for match, link in pairs:
        unmatched *= 1.0 - link.weight
        if link.weight > best_link.weight:
            best_match, best_link = match, link
        longest = max(longest, match.n_words)
        hits = max(hits, link.hits)
    return [
        1.0 - unmatched,
        best_link.weight,
        float(len(pairs)),
        math.log1p(best_link.support),
        float(longest),
        hits / code_notes if code_notes else 0.0,
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

    def proposals(self, text: str) -> NoteProposals:
        """The lexicon's matches and the neighbours' votes in `text`."""
        note_words = lexicon_words(text)
        matches = self.lexicon.find(text, note_words)
        return NoteProposals(note_words, matches, self.neighbours.votes(text, NEIGHBOURS_K))

    def signals(self, text: str, proposals: NoteProposals | None = None) -> NoteSignals:
        """Everything the branches read in `text`: its proposals (read here unless given) with
        each match's context flags and evidence span."""
        if proposals is None:
            proposals = self.proposals(text)
        note_words, matches = proposals.words, proposals.matches
        if self.context is None or not matches:
            flags = [ContextFlags() for _ in matches]
        else:
            note_context = self.context.read(text)
            flags = [note_context.flags(match.start, match.end) for match in matches]
        starts = [word.start for word in note_words]
        spans = [self.lexicon.evidence_span(match, text, note_words, starts) for match in matches]
        return NoteSignals(matches, flags, proposals.votes, spans)

    @staticmethod
    def candidates(signals: NoteSignals | NoteProposals, extra: Sequence[str] = ()) -> list[str]:
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
        """Feature matrix float32 (len(codes), len(FEATURES)); a missing network logit is NaN.

        Filled column block by column block from what the note's signals name (a few dozen
        lexicon codes, the neighbours' votes), not code by code: a note has hundreds of
        candidates, most of them only voted for by a neighbour. Each block is gathered in
        Python lists and written with one numpy assignment (a small assignment per code cost
        more than the features themselves)."""
        rows = np.zeros((len(codes), len(FEATURES)), dtype=np.float32)
        position = {code: row for row, code in enumerate(codes)}
        lexical, flagged = self._lexicon_columns(signals, position, rows)
        column = FEATURES.index
        rows[:, column("category_noisy_or")] = _best_sibling_scores(lexical, codes)
        voted = [
            (row, (votes.score, votes.max_similarity, float(votes.count)))
            for code, votes in signals.votes.items()
            if (row := position.get(code)) is not None
        ]
        _write_block(rows, voted, column("neighbour_score"))
        train_counts = self.train_counts
        counts = np.array([train_counts.get(code, 0) for code in codes], dtype=np.float64)
        rows[:, column("prior_log_count")] = np.log1p(counts)
        logit = rows[:, column("network_logit")]
        logit[:] = math.nan
        if network_logits is not None:
            known = [
                (row, value)
                for code, value in network_logits.items()
                if (row := position.get(code)) is not None
            ]
            if known:
                at, values = zip(*known, strict=True)
                logit[list(at)] = values
        shares = [(position[code], _flag_shares(flags)) for code, flags in flagged.items() if flags]
        _write_block(rows, shares, column("negated_share"))
        return rows

    def _lexicon_columns(
        self, signals: NoteSignals, position: Mapping[str, int], rows: np.ndarray
    ) -> tuple[dict[str, float], dict[str, list[ContextFlags]]]:
        """Write each source's features of the codes the note's matches name into `rows`; return
        every named code's best noisy-OR over sources and, per candidate, its matches' flags."""
        flags_of = {
            id(match): flags for match, flags in zip(signals.matches, signals.flags, strict=True)
        }
        width = len(_SOURCE_FEATURES)
        lexical: dict[str, float] = {}
        flagged: dict[str, list[ContextFlags]] = {}
        by_source: dict[str, list[Match]] = {}
        for match in signals.matches:
            by_source.setdefault(match.source, []).append(match)
        for block, source in enumerate(SOURCES):
            named = links_by_code(by_source.get(source, ()))
            features: list[tuple[int, list[float]]] = []
            for code, pairs in named.items():
                score = noisy_or(link.weight for _, link in pairs)
                lexical[code] = max(lexical.get(code, 0.0), score)
                if (row := position.get(code)) is None:
                    continue
                features.append((row, _source_features(pairs, self.train_counts.get(code, 0))))
                flagged.setdefault(code, []).extend(flags_of[id(match)] for match, _ in pairs)
            _write_block(rows, features, block * width)
        return lexical, flagged


def _write_block(rows: np.ndarray, values: Sequence[tuple[int, Sequence[float]]], at: int) -> None:
    """rows[row, at : at + k] = v for each (row, v) of `values` (each v of one length k)."""
    if not values:
        return
    at_rows, blocks = zip(*values, strict=True)
    block = np.asarray(blocks, dtype=np.float32)  # (len(values), k)
    rows[list(at_rows), at : at + block.shape[1]] = block


def _flag_shares(flags: Sequence[ContextFlags]) -> tuple[float, float, float]:
    """The share of a code's matches that are negated, hypothetical, about the family."""
    negated = hypothetical = family = 0
    for item in flags:
        negated += item.negated
        hypothetical += item.hypothetical
        family += item.family
    share = 1.0 / len(flags)
    return share * negated, share * hypothetical, share * family


def _best_sibling_scores(lexical: Mapping[str, float], codes: Sequence[str]) -> np.ndarray:
    """Per code, the best lexicon score of another code in its 3-character category (0: none)."""
    top_two: dict[str, list[tuple[float, str]]] = {}
    for code, score in lexical.items():
        best = top_two.setdefault(code[:3], [])
        best.append((score, code))
        best.sort(key=lambda item: -item[0])
        del best[2:]
    values = np.zeros(len(codes), dtype=np.float32)
    for row, code in enumerate(codes):
        for score, other in top_two.get(code[:3], ()):
            if other != code:
                values[row] = score
                break
    return values


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
        self._negated_only_factor = float(info.get("negated_only_factor", 1.0))

    @property
    def n_codes(self) -> int:
        """The label space's size: every code `place` scores."""
        return len(self._codes)

    @property
    def needs_logits(self) -> bool:
        """Whether scoring a note's candidates waits for the network: a combiner that reads its
        logit, or candidates taken from its top codes. Otherwise the runtime scores them while
        the graph runs."""
        return self._uses_network or self._network_candidates > 0

    def proposals(self, text: str) -> NoteProposals:
        """What names a note's candidates: the lexicon's matches and the neighbours' votes."""
        return self._builder.proposals(text)

    def signals(self, text: str, proposals: NoteProposals | None = None) -> NoteSignals:
        """What the lexicon, context rules and neighbours read in one note (from its
        `proposals` when the caller has them)."""
        return self._builder.signals(text, proposals)

    def candidate_columns(self, signals: NoteSignals | NoteProposals) -> np.ndarray:
        """The network columns (int64, ascending) the runtime has the graph decode for a note
        whatever its first stage says, where the fusion waits for the network (`needs_logits`;
        any other fused bundle starts the graph before the proposals and forces nothing).

        A combiner that reads the network gets every candidate's decoded logit, as it was fitted
        on. One that takes only the network's top codes needs decoding for attention evidence,
        which a code the lexicon names already has: then only the neighbours' strongest other
        codes are forced."""
        codes = self._builder.candidates(signals)
        if not self._uses_network:
            named = {link.code for match in signals.matches for link in match.links}
            voted = [(votes.score, code) for code, votes in signals.votes.items()]
            codes = [code for _, code in sorted(voted, reverse=True) if code not in named]
            codes = codes[:NEIGHBOUR_ATTENTION_CODES]
        columns = [self._index.get(code, -1) for code in codes]
        return np.array(sorted(c for c in columns if 0 <= c < self._n_network), dtype=np.int64)

    def candidate_rows(
        self, signals: NoteSignals, logits: np.ndarray | None = None
    ) -> CandidateRows:
        """A note's candidates and their feature rows (what `candidate_scores` scores); `logits`
        (C_network,) the note's network logits, needed only when `needs_logits`."""
        if logits is None and self.needs_logits:
            raise ValueError("this fused model reads the network: pass the note's logits")
        extra: list[str] = []
        if self._network_candidates and logits is not None:
            top = np.argsort(-logits, kind="stable")[: self._network_candidates]
            extra = [self._codes[column] for column in top.tolist()]
        candidates = [
            code for code in self._builder.candidates(signals, extra) if code in self._index
        ]
        columns = np.array([self._index[code] for code in candidates], dtype=np.int64)
        network = None
        if self._uses_network and logits is not None:
            network = {
                code: float(logits[column])
                for code, column in zip(candidates, columns.tolist(), strict=True)
                if column < self._n_network
            }
        return CandidateRows(columns, self._builder.rows(signals, candidates, network))

    def margins(self, rows: np.ndarray) -> np.ndarray:
        """The combiner's margin float32 (R,) per feature row (R, F): rows of several notes may
        be scored in one call, each row alone."""
        return self._combiner.margins(rows)

    def probabilities(self, rows: np.ndarray, margins: np.ndarray) -> np.ndarray:
        """Fused probabilities float32 (R,) of feature rows (R, F) from their `margins` (R,):
        the combiner's sigmoid, candidates whose every lexicon match is negated demoted by the
        bundle's `negated_only_factor`."""
        return demote_negated_only(sigmoid(margins), rows, self._negated_only_factor)

    def candidate_scores(
        self, signals: NoteSignals, logits: np.ndarray | None = None
    ) -> CandidateScores:
        """The fused probabilities of a note's candidates (`candidate_rows`)."""
        found = self.candidate_rows(signals, logits)
        margins = self.margins(found.rows)
        return CandidateScores(found.columns, self.probabilities(found.rows, margins))

    def place(self, candidates: CandidateScores, logits: np.ndarray) -> np.ndarray:
        """Probabilities float32 (C,) over the label space: the candidates' own, every other
        code below them all in the network's order (`logits` (C_network,))."""
        fused = candidates.probabilities
        floor = float(fused.min()) if len(fused) else 1.0
        scores = np.zeros(len(self._codes), dtype=np.float32)  # (C,)
        # Below every candidate, in the network's order: half the lowest candidate's score.
        scores[: self._n_network] = 0.5 * floor * sigmoid(logits)
        scores[candidates.columns] = fused
        return scores
