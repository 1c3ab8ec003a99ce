"""Serving a PLANT bundle with ONNX Runtime: the one predictor the service and evaluation share.

It owns input validation, tokenisation with truncation to the bundle's `max_tokens`, length-sorted
batching, sigmoid scores, thresholds, ranking and highlights. It never imports torch.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import onnxruntime as ort

from model.batching import length_batches
from model.bundle import Bundle, BundleError, BundleMetadata, load_bundle
from model.fusion import FusedScorer, NoteProposals, NoteSignals
from model.graph_calls import CodedCall, NoteAttention, PendingCall
from model.highlights import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_MIN_RATIO,
    extract_highlights,
    merge_evidence,
    word_spans,
)
from model.lexicon_evidence import lexicon_evidence
from model.metadata import GRAPH_INPUTS, GRAPH_OUTPUTS, SHORTLIST_INPUTS, SHORTLIST_OUTPUTS
from model.overlap import CallFusion, RuntimeFusion, SessionThread, usable_cores
from model.prediction import CodePrediction, Highlight, best_first, sigmoid
from model.thresholds import Thresholds
from model.tokenizer import NoteTokenizer, TokenizedNote

# Codes x tokens one graph call decodes at most (~16 MB per float32 decoder tensor, inside the
# processor's caches). One call of 16 notes over 1,767 codes was 1.3x slower per note than 16
# calls of one: the elementwise passes over (B, windows, codes, W) tensors ran at memory speed
# (benchmarks/label_space_latency.py). With a shortlist the decoder reads S codes, not all.
DECODER_CELLS_PER_CALL = 4_194_304
# Short and bilingual, like the notes served; it exercises tokenizer, graph and highlights.
WARM_UP_NOTE = "Patient admitted with fever and cough. Paciente con fiebre y tos."
# Notes per graph call where the graph runs on its own thread beside the fusion (`_coded`): small
# enough that a request's first call starts soon and its last hands back little, large enough
# to keep the graph's batching (figures in docs/BENCHMARKS.md).
PIPELINE_NOTES = 4


def check_texts(texts: Sequence[str]) -> list[str]:
    """Reject what cannot be a batch of notes, saying what to send instead."""
    if isinstance(texts, str):
        raise TypeError("texts must be a sequence of notes, not one string: wrap it in a list")
    notes = list(texts)
    for index, text in enumerate(notes):
        if not isinstance(text, str):
            raise TypeError(f"note {index} is a {type(text).__name__}, not a str")
        if not text.strip():
            raise ValueError(f"note {index} is empty or only white space: send the note's text")
    return notes


@dataclass(frozen=True)
class ShortlistRun:
    """What two-stage decoding did with some notes (`OnnxPredictor.shortlists`)."""

    first_stage: np.ndarray  # (N, C_network) float32: the first stage's logits
    decoded: list[np.ndarray]  # per note, the network columns the decoder ran for (int64)
    forced: list[np.ndarray]  # per note, the columns the runtime forced in (int64, ascending)


class OnnxPredictor:
    """`model.prediction.Predictor` over an exported PLANT bundle, CPU only.

    `threads` is how many cores one call may use (None: ONNX Runtime's default, one intra-op
    thread per physical core, for a bundle without fusion; every usable core with fusion). A fused
    bundle on two or more threads runs the graph (on the others) and the combiner on a thread of
    their own while the calling thread reads the notes' context, evidence spans and feature rows,
    and a request of several notes is a pipeline of graph calls (`model.overlap`): the fusion's
    Python needs about as long as the graph on one thread (docs/BENCHMARKS.md has the served
    path, batch 1 and 16).
    `shortlist_size` overrides the bundle's S (codes decoded per note) for a bundle with a
    shortlist, so one bundle can be served, and measured, at several S (>= the number of
    network codes: full decoding). `proposals_first` names the fusion's candidates before the
    graph starts even where the combiner does not read the network (the served path before
    2026-12-01, for comparisons). Safe to call from several threads at once: the session and
    tokenizer are only read.
    """

    def __init__(
        self,
        bundle_dir: str | Path,
        threads: int | None = None,
        batch_size: int = 16,
        *,
        highlight_tokens: int = DEFAULT_MAX_TOKENS,
        highlight_min_ratio: float = DEFAULT_MIN_RATIO,
        max_batch_tokens: int | None = None,
        fused: bool = True,
        shortlist_size: int | None = None,
        context_rules: bool = True,
        proposals_first: bool = False,
    ) -> None:
        if threads is not None and threads < 1:
            raise ValueError(f"threads must be a positive number or None, got {threads}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if max_batch_tokens is not None and max_batch_tokens < 1:
            raise ValueError(f"max_batch_tokens must be positive or None, got {max_batch_tokens}")
        self._max_batch_tokens = max_batch_tokens
        self._bundle: Bundle = load_bundle(bundle_dir)
        metadata = self._bundle.metadata
        # The decoder's attention window: a graph call holds notes of one window count.
        window = metadata.config.get("window")
        self._window = window if isinstance(window, int) and window > 0 else None
        self._batch_size = batch_size
        self._highlight_tokens = highlight_tokens
        self._highlight_min_ratio = highlight_min_ratio

        # Fused: the fusion's own thread beside the graph's where a call may use two cores.
        fused_bundle = fused and metadata.fusion is not None
        cores = threads if threads is not None or not fused_bundle else usable_cores()
        overlap = fused_bundle and cores is not None and cores >= 2
        graph_threads = cores - 1 if overlap and cores is not None else cores
        options = ort.SessionOptions()
        if graph_threads is not None:
            options.intra_op_num_threads = graph_threads
        # Requests run side by side on service threads; one op at a time within a request.
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self._session = ort.InferenceSession(
                str(self._bundle.graph_path),
                sess_options=options,
                providers=["CPUExecutionProvider"],
            )
        except Exception as error:  # ORT raises its own pybind exception types
            raise BundleError(
                f"ONNX Runtime {ort.__version__} cannot load {self._bundle.graph_path}: {error}. "
                "Re-export the bundle with an opset this onnxruntime supports, or upgrade it"
            ) from error
        self._check_graph(metadata)
        self._tokenizer = NoteTokenizer.load(self._bundle.tokenizer_path)

        self._codes = [entry["code"] for entry in metadata.codes]
        self._descriptions = [entry["description"] for entry in metadata.codes]
        # Finite, one per code: checked when the bundle loaded. Read from the record itself, not a
        # BundleMetadata property, so a training run started on older code can still load this.
        self._thresholds = Thresholds.from_json(metadata.thresholds).per_code  # (C,) float64
        self._n_network = metadata.n_network_codes
        # The fused model where the bundle has one; `fused=False` serves the network alone and
        # `context_rules=False` reads no negation/uncertainty/family context (both for ablations
        # and latency comparisons; without fusion, codes only the fusion knows score 0).
        self._fusion = (
            RuntimeFusion(FusedScorer(self._bundle, context_rules=context_rules))
            if fused_bundle
            else None
        )
        # Proposals before the graph only where they name codes it must decode (`_coded`).
        self._names_first = self._fusion is not None and (
            proposals_first or self._fusion.scorer.needs_logits
        )
        self._beside = SessionThread(own_thread=overlap)
        self._shortlist_size, self._always = self._shortlist_settings(metadata, shortlist_size)
        self._ready = False
        self._ready_lock = threading.Lock()

    def _check_graph(self, metadata: BundleMetadata) -> None:
        inputs = [node.name for node in self._session.get_inputs()]
        outputs = {node.name: node for node in self._session.get_outputs()}
        shortlisted = metadata.shortlist is not None
        need_inputs = [*GRAPH_INPUTS, *(SHORTLIST_INPUTS if shortlisted else ())]
        need_outputs = [*GRAPH_OUTPUTS, *(SHORTLIST_OUTPUTS if shortlisted else ())]
        if sorted(inputs) != sorted(need_inputs) or not set(need_outputs) <= set(outputs):
            described = "with" if shortlisted else "without"
            raise BundleError(
                f"{self._bundle.graph_path} has inputs {inputs} and outputs {sorted(outputs)}; "
                f"bundle.json (format_version {metadata.format_version}, {described} a "
                f"shortlist) needs inputs {need_inputs} and outputs {need_outputs}: "
                "re-export the bundle"
            )
        # Dynamic axes are strings; only fixed sizes can be checked before running.
        n_codes = outputs["logits"].shape[-1]
        if isinstance(n_codes, int) and n_codes != metadata.n_network_codes:
            raise BundleError(
                f"the graph scores {n_codes} codes but bundle.json says it scores "
                f"{metadata.n_network_codes}: re-export the bundle"
            )
        top_k = outputs["top_codes"].shape[-1]
        if isinstance(top_k, int) and top_k != metadata.top_k_export:
            raise BundleError(
                f"the graph exports {top_k} top codes but bundle.json says top_k_export="
                f"{metadata.top_k_export}: re-export the bundle"
            )

    @staticmethod
    def _shortlist_settings(
        metadata: BundleMetadata, size: int | None
    ) -> tuple[int | None, np.ndarray]:
        """S (None: the graph decodes every code) and the columns always decoded (int64)."""
        if metadata.shortlist is None:
            if size is not None:
                raise ValueError(
                    f"bundle {metadata.name} (format_version {metadata.format_version}) has no "
                    "shortlist: its graph decodes every code, so shortlist_size cannot be set"
                )
            return None, np.zeros(0, dtype=np.int64)
        if size is not None and size < 1:
            raise ValueError(f"shortlist_size must be a positive number or None, got {size}")
        counts = np.asarray(metadata.train_code_counts[: metadata.n_network_codes])
        least = metadata.shortlist["min_train_notes"]
        always = np.flatnonzero(counts >= least) if least > 0 else np.zeros(0, dtype=np.int64)
        return (metadata.shortlist["size"] if size is None else size), always.astype(np.int64)

    # -- description ----------------------------------------------------------------------------

    @property
    def codes(self) -> Sequence[str]:
        return list(self._codes)

    @property
    def descriptions(self) -> list[str]:
        return list(self._descriptions)

    @property
    def thresholds(self) -> np.ndarray:
        """Decision threshold per code, float64 (C,), per-code value or the global fallback."""
        return self._thresholds.copy()

    @property
    def train_code_counts(self) -> list[int]:
        return list(self._bundle.metadata.train_code_counts)

    @property
    def metadata(self) -> BundleMetadata:
        return self._bundle.metadata

    @property
    def bundle(self) -> Bundle:
        return self._bundle

    @property
    def tokenizer(self) -> NoteTokenizer:
        return self._tokenizer

    @property
    def name(self) -> str:
        return self._bundle.metadata.name

    @property
    def version(self) -> str:
        return self._bundle.metadata.version

    @property
    def max_tokens(self) -> int:
        return self._bundle.metadata.max_tokens

    @property
    def precision(self) -> str:
        """The graph's numeric precision, "fp32" or "int8" (`plant-icd quantize`)."""
        return self._bundle.metadata.precision

    @property
    def graph_thread(self) -> bool:
        """Whether the graph runs on its own thread beside the fusion's Python (a fused bundle
        on two or more threads)."""
        return self._beside.own_thread

    @property
    def shortlist_size(self) -> int | None:
        """S served (the bundle's or the override); None: the graph decodes every code."""
        return self._shortlist_size

    # -- inference ------------------------------------------------------------------------------

    def tokenize(self, texts: Sequence[str]) -> list[TokenizedNote]:
        """The tokens the graph reads: each note truncated to the bundle's `max_tokens`."""
        notes = self._tokenizer.encode_batch(check_texts(texts), max_tokens=self.max_tokens)
        for index, note in enumerate(notes):
            if len(note) == 0:
                raise ValueError(f"note {index} yields no tokens: send the note's text")
        return notes

    def _calls(self, lengths: Sequence[int]) -> list[np.ndarray]:
        """Note indices per graph call (`model.batching.length_batches`, as training groups):
        notes of one window count per call, and at most DECODER_CELLS_PER_CALL codes x tokens.
        Where the graph has its own thread, at most PIPELINE_NOTES notes per call, so a request
        of several notes is a pipeline of calls (`_coded`)."""
        decoded = self._n_network if self._shortlist_size is None else self._shortlist_size
        tokens = max(1, DECODER_CELLS_PER_CALL // max(1, min(decoded, self._n_network)))
        if self._max_batch_tokens is not None:
            tokens = min(tokens, self._max_batch_tokens)
        size = self._batch_size
        if self._beside.own_thread:
            size = min(size, PIPELINE_NOTES)
        return length_batches(lengths, size, tokens, self._window)

    def _forced(self, proposals: Sequence[NoteProposals] | None, n_notes: int) -> list[np.ndarray]:
        """Per note, the network columns decoded whatever the first stage says (int64,
        ascending): codes above the bundle's training-prior floor, and with `proposals` (a
        combiner that reads the network, `_names_first`) the candidates they name."""
        forced = []
        for index in range(n_notes):
            columns = self._always
            if proposals is not None and self._fusion is not None:
                named = self._fusion.scorer.candidate_columns(proposals[index])
                columns = np.union1d(columns, named)
            forced.append(columns.astype(np.int64))
        return forced

    def _feed(
        self, notes: Sequence[TokenizedNote], forced: Sequence[np.ndarray]
    ) -> dict[str, np.ndarray]:
        """The graph's inputs for one call's notes, padded; with a shortlist also the forced
        codes (B, C_network) bool and S."""
        input_ids, attention_mask = self._tokenizer.pad_batch(notes)
        feed = dict(zip(GRAPH_INPUTS, (input_ids, attention_mask), strict=True))
        if self._shortlist_size is not None:
            mask = np.zeros((len(notes), self._n_network), dtype=bool)  # (B, C_network)
            for row, columns in enumerate(forced):
                mask[row, columns] = True
            size = np.array(self._shortlist_size, dtype=np.int64)
            feed |= dict(zip(SHORTLIST_INPUTS, (mask, size), strict=True))
        return feed

    def _coded(
        self,
        texts: Sequence[str],
        notes: Sequence[TokenizedNote],
        *,
        with_attention: bool,
        with_shortlist: bool = False,
    ) -> Iterator[CodedCall]:
        """The notes coded one graph call at a time, in call order (`_calls`).

        Per call: the graph started (on its own thread where it has one), the fusion read while
        it runs, and only then the call before handed back, so whatever the caller does with it
        (ranking, evidence) also runs beside this call's graph. A combiner that reads the
        network has its candidates decoded, so the fusion's proposals, which name them, come
        before the graph there. Any other fused bundle starts the graph at once and reads them
        beside it: decoding serves only the codes no branch proposes and attention evidence
        there (served p50 0.81x on the D-en demo bundle; a code only the neighbours propose has
        attention evidence only if the first stage decodes it; docs/BENCHMARKS.md)."""
        fetch = list(GRAPH_OUTPUTS) if with_attention else [GRAPH_OUTPUTS[0]]
        if with_shortlist:
            fetch += SHORTLIST_OUTPUTS
        pending: PendingCall | None = None
        for members in self._calls([len(note) for note in notes]):
            call_texts = [texts[i] for i in members.tolist()]
            call_notes = [notes[i] for i in members.tolist()]
            proposals = None
            if self._fusion is not None and self._names_first:
                proposals = self._fusion.proposals(call_texts)
            forced = self._forced(proposals, len(members))
            outputs = self._beside.start(
                partial(self._session.run, fetch, self._feed(call_notes, forced))
            )
            fused = None
            if self._fusion is not None and not with_shortlist:
                if proposals is None:
                    proposals = self._fusion.proposals(call_texts)
                fused = self._fusion.fuse(call_texts, proposals, self._beside)
            if pending is not None:
                yield pending.done()
            pending = PendingCall(members, call_notes, forced, fetch, outputs, fused)
        if pending is not None:
            yield pending.done()

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities, float32 (len(texts), len(codes)), columns in `codes` order."""
        note_texts = check_texts(texts)
        notes = self.tokenize(note_texts)
        scores = np.zeros((len(notes), len(self._codes)), dtype=np.float32)  # (N, C)
        for call in self._coded(note_texts, notes, with_attention=False):
            scores[call.members] = self._probabilities(call.logits, call.fused)
        return scores

    def shortlists(self, texts: Sequence[str]) -> ShortlistRun:
        """What two-stage decoding does with `texts` at this predictor's S: the first stage's
        logits, the codes decoded and the codes forced in, per note (for measuring first-stage
        recall at several S: build one predictor per S with `shortlist_size`)."""
        if self._shortlist_size is None:
            raise ValueError(f"bundle {self.name} has no shortlist: it decodes every code")
        note_texts = check_texts(texts)
        notes = self.tokenize(note_texts)
        first_stage = np.zeros((len(notes), self._n_network), dtype=np.float32)
        decoded: list[np.ndarray] = [np.zeros(0, np.int64)] * len(notes)
        forced: list[np.ndarray] = [np.zeros(0, np.int64)] * len(notes)
        for call in self._coded(note_texts, notes, with_attention=False, with_shortlist=True):
            assert call.first_stage is not None
            first_stage[call.members] = call.first_stage
            for row, index in enumerate(call.members.tolist()):
                decoded[index] = call.decoded[row]
                forced[index] = call.forced[row]
        return ShortlistRun(first_stage, decoded, forced)

    def _probabilities(self, logits: np.ndarray, fused: CallFusion | None) -> np.ndarray:
        """Scores float32 (N, C) from the network's logits (N, C_network), fused where the bundle
        has a fused model (`fused`: the fusion's work on the call's notes)."""
        if self._fusion is not None and fused is not None:
            return self._fusion.probabilities(logits, fused)
        scores = np.zeros((len(logits), len(self._codes)), dtype=np.float32)  # (N, C)
        scores[:, : self._n_network] = sigmoid(logits)
        return scores

    def predict(self, texts: Sequence[str], top_k: int | None = None) -> list[list[CodePrediction]]:
        """Ranked codes per note, best first (ties: earlier code), with highlights for codes the
        graph exported attention for (its top K)."""
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be a positive number or None, got {top_k}")
        note_texts = check_texts(texts)
        notes = self.tokenize(note_texts)
        predictions: list[list[CodePrediction]] = [[] for _ in notes]
        for call in self._coded(note_texts, notes, with_attention=True):
            probabilities = self._probabilities(call.logits, call.fused)  # (B, C)
            signals = [None] * len(call.members) if call.fused is None else call.fused.signals
            for row, index in enumerate(call.members.tolist()):
                predictions[index] = self._ranked(
                    note_texts[index],
                    call.notes[row],
                    probabilities[row],
                    call.attention[row],
                    signals[row],
                    top_k,
                )
        return predictions

    def _ranked(
        self,
        text: str,
        note: TokenizedNote,
        probabilities: np.ndarray,
        evidence: NoteAttention,
        signals: NoteSignals | None,
        top_k: int | None,
    ) -> list[CodePrediction]:
        """One note's ranked codes with their evidence: lexicon matches, then attention phrases."""
        ranking = best_first(probabilities, top_k)
        matched: dict[str, list[Highlight]] = {}
        if signals is not None:
            # Only the codes shown: most matches name codes far down the ranking.
            shown = None if top_k is None else {self._codes[c] for c in ranking.tolist()}
            matched = lexicon_evidence(signals, text, shown)
        attention_row = {int(code): k for k, code in enumerate(evidence.top_codes.tolist())}
        words = word_spans(text)  # once per note, not per code
        ranked: list[CodePrediction] = []
        for rank, code_index in enumerate(ranking.tolist(), start=1):
            score = float(probabilities[code_index])
            attended: list[Highlight] = []
            if code_index in attention_row:
                attended = extract_highlights(
                    evidence.top_attention[attention_row[code_index]],  # (T_note,)
                    note.offsets,
                    text,
                    max_tokens=self._highlight_tokens,
                    min_ratio=self._highlight_min_ratio,
                    words=words,
                )
            highlights = tuple(merge_evidence(matched.get(self._codes[code_index], []), attended))
            ranked.append(
                CodePrediction(
                    code=self._codes[code_index],
                    description=self._descriptions[code_index],
                    score=score,
                    rank=rank,
                    above_threshold=bool(score >= self._thresholds[code_index]),
                    highlights=highlights,
                )
            )
        return ranked

    # -- readiness ------------------------------------------------------------------------------

    def warm_up(self) -> None:
        """Run one real inference; only its success makes `is_ready()` true."""
        with self._ready_lock:
            self._ready = False
            probabilities = self.scores([WARM_UP_NOTE])
            if not np.isfinite(probabilities).all():
                raise RuntimeError(
                    f"warm-up inference on {self._bundle.graph_path} gave non-finite scores: the "
                    "graph is broken; re-export the bundle"
                )
            self.predict([WARM_UP_NOTE], top_k=1)
            self._ready = True

    def is_ready(self) -> bool:
        return self._ready
