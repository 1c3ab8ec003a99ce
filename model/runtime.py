"""Serving a PLANT bundle with ONNX Runtime: the one predictor the service and evaluation share.

It owns input validation, tokenisation with truncation to the bundle's `max_tokens`, length-sorted
batching, sigmoid scores, thresholds, ranking and highlights. It never imports torch.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnxruntime as ort

from model.batching import length_batches
from model.bundle import Bundle, BundleError, BundleMetadata, load_bundle
from model.fusion import FusedScorer, NoteSignals
from model.highlights import (
    DEFAULT_MAX_TOKENS,
    DEFAULT_MIN_RATIO,
    extract_highlights,
    merge_evidence,
)
from model.metadata import GRAPH_INPUTS, GRAPH_OUTPUTS
from model.prediction import CodePrediction, Highlight, sigmoid
from model.thresholds import Thresholds
from model.tokenizer import NoteTokenizer, TokenizedNote

# Short and bilingual, like the notes served; it exercises tokenizer, graph and highlights.
WARM_UP_NOTE = "Patient admitted with fever and cough. Paciente con fiebre y tos."


def best_first(scores: np.ndarray, k: int | None = None) -> np.ndarray:
    """Indices of the `k` best scores (all when None), best first, ties by lower index.

    Equal to `np.argsort(-scores, kind="stable")[:k]` without sorting every code: a label space
    of tens of thousands of codes (catalogue codes) costs a partition, not a full sort."""
    n = len(scores)
    if k is None or k >= n:
        return np.argsort(-scores, kind="stable")
    kth = np.partition(scores, n - k)[n - k]  # the k-th largest value
    above = np.flatnonzero(scores > kth)
    tied = np.flatnonzero(scores == kth)[: k - len(above)]  # lower indices first
    chosen = np.concatenate([above, tied])
    return chosen[np.lexsort((chosen, -scores[chosen]))]


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
class _NoteAttention:
    """The graph's evidence for one note: attention of its top K codes over the tokens read."""

    top_codes: np.ndarray  # (K,) int64, code indices
    top_attention: np.ndarray  # (K, T_note) float32


class OnnxPredictor:
    """`model.prediction.Predictor` over an exported PLANT bundle, CPU only.

    `threads` sets ONNX Runtime's intra-op threads (None: its default, one per physical core).
    Safe to call from several threads at once: the session and tokenizer are only read.
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
        self._batch_size = batch_size
        self._highlight_tokens = highlight_tokens
        self._highlight_min_ratio = highlight_min_ratio

        options = ort.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
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
        # The fused model (lexicon, neighbours, combiner) where the bundle has one.
        # The fused model where the bundle has one; `fused=False` serves the network alone (for
        # ablations and latency comparisons; codes only the fusion knows then score 0).
        self._fusion = FusedScorer(self._bundle) if fused and metadata.fusion is not None else None
        self._ready = False
        self._ready_lock = threading.Lock()

    def _check_graph(self, metadata: BundleMetadata) -> None:
        inputs = [node.name for node in self._session.get_inputs()]
        outputs = {node.name: node for node in self._session.get_outputs()}
        if sorted(inputs) != sorted(GRAPH_INPUTS) or not set(GRAPH_OUTPUTS) <= set(outputs):
            raise BundleError(
                f"{self._bundle.graph_path} has inputs {inputs} and outputs {sorted(outputs)}; "
                f"the runtime needs inputs {list(GRAPH_INPUTS)} and outputs {list(GRAPH_OUTPUTS)}: "
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

    # -- inference ------------------------------------------------------------------------------

    def tokenize(self, texts: Sequence[str]) -> list[TokenizedNote]:
        """The tokens the graph reads: each note truncated to the bundle's `max_tokens`."""
        notes = self._tokenizer.encode_batch(check_texts(texts), max_tokens=self.max_tokens)
        for index, note in enumerate(notes):
            if len(note) == 0:
                raise ValueError(f"note {index} yields no tokens: send the note's text")
        return notes

    def _batches(self, lengths: Sequence[int]) -> list[np.ndarray]:
        """Note indices per graph call (`model.batching.length_batches`, as training groups)."""
        return length_batches(lengths, self._batch_size, self._max_batch_tokens)

    def _run(
        self, notes: Sequence[TokenizedNote], with_attention: bool
    ) -> tuple[np.ndarray, list[_NoteAttention]]:
        """Run the graph in batches of notes of similar length; answers in the input order.

        Returns logits float32 (N, C_network) and, when asked, each note's attention (else an
        empty list).
        """
        logits = np.zeros((len(notes), self._n_network), dtype=np.float32)  # (N, C_network)
        attention: list[_NoteAttention | None] = [None] * len(notes)
        fetch = list(GRAPH_OUTPUTS) if with_attention else [GRAPH_OUTPUTS[0]]
        for members in self._batches([len(note) for note in notes]):
            input_ids, attention_mask = self._tokenizer.pad_batch([notes[i] for i in members])
            results = self._session.run(
                fetch, dict(zip(GRAPH_INPUTS, (input_ids, attention_mask), strict=True))
            )
            logits[members] = np.asarray(results[0], dtype=np.float32)  # (B, C)
            if not with_attention:
                continue
            top_codes = np.asarray(results[1], dtype=np.int64)  # (B, K)
            top_attention = np.asarray(results[2], dtype=np.float32)  # (B, K, T)
            for row, note_index in enumerate(members.tolist()):
                n_tokens = len(notes[note_index])  # drop the padding columns
                attention[note_index] = _NoteAttention(
                    top_codes[row], top_attention[row, :, :n_tokens]
                )
        return logits, [item for item in attention if item is not None]

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        """Probabilities, float32 (len(texts), len(codes)), columns in `codes` order."""
        note_texts = check_texts(texts)
        notes = self.tokenize(note_texts)
        if not notes:
            return np.zeros((0, len(self._codes)), dtype=np.float32)
        logits, _ = self._run(notes, with_attention=False)  # (N, C_network)
        return self._probabilities(note_texts, logits)[0]

    def _probabilities(
        self, texts: Sequence[str], logits: np.ndarray
    ) -> tuple[np.ndarray, list[NoteSignals | None]]:
        """Scores float32 (N, C) from the network's logits (N, C_network), fused where the bundle
        has a fused model, and what the lexicon found in each note (None without fusion)."""
        if self._fusion is None:
            scores = np.zeros((len(texts), len(self._codes)), dtype=np.float32)  # (N, C)
            scores[:, : self._n_network] = sigmoid(logits)
            return scores, [None] * len(texts)
        scores = np.zeros((len(texts), len(self._codes)), dtype=np.float32)  # (N, C)
        found: list[NoteSignals | None] = []
        for row, (text, note_logits) in enumerate(zip(texts, logits, strict=True)):
            scores[row], signals = self._fusion.score(text, note_logits)
            found.append(signals)
        return scores, found

    def predict(self, texts: Sequence[str], top_k: int | None = None) -> list[list[CodePrediction]]:
        """Ranked codes per note, best first (ties: earlier code), with highlights for codes the
        graph exported attention for (its top K)."""
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be a positive number or None, got {top_k}")
        note_texts = check_texts(texts)
        notes = self.tokenize(note_texts)
        if not notes:
            return []
        logits, attention = self._run(notes, with_attention=True)
        probabilities, found = self._probabilities(note_texts, logits)  # (N, C)
        predictions: list[list[CodePrediction]] = []
        for text, note, note_probabilities, evidence, signals in zip(
            note_texts, notes, probabilities, attention, found, strict=True
        ):
            ranking = best_first(note_probabilities, top_k)
            matched = FusedScorer.evidence(signals, text) if signals is not None else {}
            attention_row = {int(code): k for k, code in enumerate(evidence.top_codes.tolist())}
            ranked: list[CodePrediction] = []
            for rank, code_index in enumerate(ranking.tolist(), start=1):
                score = float(note_probabilities[code_index])
                attended: list[Highlight] = []
                if code_index in attention_row:
                    attended = extract_highlights(
                        evidence.top_attention[attention_row[code_index]],  # (T_note,)
                        note.offsets,
                        text,
                        max_tokens=self._highlight_tokens,
                        min_ratio=self._highlight_min_ratio,
                    )
                highlights = tuple(
                    merge_evidence(matched.get(self._codes[code_index], []), attended)
                )
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
            predictions.append(ranked)
        return predictions

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
