"""One graph call of the runtime on its way and coded: its notes, the graph's outputs read back
(logits, the top codes' attention without padding, the shortlist), and the fusion's work on its
notes (`model.runtime.OnnxPredictor` starts calls and hands them back in a pipeline).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from model.metadata import GRAPH_OUTPUTS, SHORTLIST_OUTPUTS
from model.overlap import CallFusion
from model.tokenizer import TokenizedNote


@dataclass(frozen=True)
class NoteAttention:
    """The graph's evidence for one note: attention of its top K codes over the tokens read."""

    top_codes: np.ndarray  # (K,) int64, code indices
    top_attention: np.ndarray  # (K, T_note) float32


@dataclass(frozen=True)
class CodedCall:
    """One graph call's notes coded: the graph's answers and the fusion's work, in call order."""

    members: np.ndarray  # (B,) int64, the notes' indices in the request
    notes: list[TokenizedNote]
    logits: np.ndarray  # (B, C_network) float32
    attention: list[NoteAttention]  # per note when fetched, else empty
    fused: CallFusion | None  # for a fused bundle
    forced: list[np.ndarray]  # per note, the network columns decoded whatever the first stage
    decoded: list[np.ndarray]  # per note with the shortlist fetched: the columns decoded
    first_stage: np.ndarray | None  # (B, C_network) float32, when fetched


@dataclass(frozen=True)
class PendingCall:
    """A graph call started: what `done` needs to hand it back once its outputs are in."""

    members: np.ndarray
    notes: list[TokenizedNote]
    forced: list[np.ndarray]
    fetch: list[str]
    outputs: Callable[[], list[object]]
    fused: CallFusion | None

    def done(self) -> CodedCall:
        results = dict(zip(self.fetch, self.outputs(), strict=True))
        attention = []
        if GRAPH_OUTPUTS[1] in results:
            top_codes = np.asarray(results[GRAPH_OUTPUTS[1]], dtype=np.int64)  # (B, K)
            top_attention = np.asarray(results[GRAPH_OUTPUTS[2]], dtype=np.float32)  # (B, K, T)
            attention = [
                # without the padding columns
                NoteAttention(top_codes[row], top_attention[row, :, : len(note)])
                for row, note in enumerate(self.notes)
            ]
        first_stage, decoded = None, []
        if SHORTLIST_OUTPUTS[0] in results:
            first_stage = np.asarray(results[SHORTLIST_OUTPUTS[1]], dtype=np.float32)
            decoded = list(np.asarray(results[SHORTLIST_OUTPUTS[0]], dtype=np.int64))  # (B, S) rows
        return CodedCall(
            members=self.members,
            notes=self.notes,
            logits=np.asarray(results[GRAPH_OUTPUTS[0]], dtype=np.float32),
            attention=attention,
            fused=self.fused,
            forced=self.forced,
            decoded=decoded,
            first_stage=first_stage,
        )
