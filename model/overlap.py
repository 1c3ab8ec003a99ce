"""How one call's work shares a call's cores: the ONNX Runtime work (the graph, the combiner) on a
thread of its own, the fusion's Python beside it on the caller's thread.

ONNX Runtime releases the GIL while a session runs, so where a call may use two cores or more the
caller reads a fused bundle's context rules, evidence spans and feature rows (about 4 ms of Python
per CodiEsp note; the lexicon and neighbours too, unless the combiner reads the network and they
name the codes the graph must decode) while the graph decodes, and hands the rows to the combiner on
the other thread too. A request of several notes is coded in a pipeline of graph calls: while call k
runs, the caller reads the fusion of call k and hands back call k-1 (ranking, evidence, highlights),
so the Python of a request of 16 notes is not waited for by an idle graph (figures in
docs/BENCHMARKS.md).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial
from typing import TypeVar

import numpy as np

from model.fusion import CandidateScores, FusedScorer, NoteProposals, NoteSignals

# Session runs beside their callers' Python at once (requests served side by side, each with its
# graph call and combiner call); more wait their turn.
WORKERS = 8
_Result = TypeVar("_Result")


def usable_cores() -> int:
    """The cores this process may run on (its affinity where the system tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class SessionThread:
    """Runs work that releases the GIL (ONNX Runtime sessions) on a worker thread
    (`own_thread`), else in the caller's thread at once."""

    def __init__(self, *, own_thread: bool) -> None:
        self._pool = (
            ThreadPoolExecutor(WORKERS, thread_name_prefix="plant-icd-session")
            if own_thread
            else None
        )

    @property
    def own_thread(self) -> bool:
        return self._pool is not None

    def start(self, work: Callable[[], _Result]) -> Callable[[], _Result]:
        """Start `work`; the returned call waits for its result.

        With a thread of its own, this returns once `work` has begun: a worker that had to win
        the GIL from a caller busy in Python would wait up to the interpreter's switch interval
        (5 ms) before it even started."""
        if self._pool is None:
            result = work()
            return lambda: result
        begun = threading.Event()
        future = self._pool.submit(self._run, work, begun)
        begun.wait()
        return future.result

    @staticmethod
    def _run(work: Callable[[], _Result], begun: threading.Event) -> _Result:
        begun.set()  # the caller wakes once `work` lets go of the GIL
        return work()


@dataclass(frozen=True)
class CallFusion:
    """The fusion's work on one graph call's notes that does not wait for the graph: each
    note's signals, and unless the combiner reads the network's logits, each note's candidate
    columns with the combiner's margins on their way (every note's rows in one combiner call)."""

    signals: list[NoteSignals]
    columns: list[np.ndarray] | None  # per note, (K_i,) int64
    rows: np.ndarray | None  # (sum K_i, F) float32, the notes' feature rows in turn
    margins: Callable[[], np.ndarray] | None  # waits for float32 (sum K_i,), notes in turn


class RuntimeFusion:
    """A fused bundle's scorer as a call uses it: proposals (before the graph starts where they
    decide what it decodes, beside it otherwise), the rest while the graph runs, the label-space
    scores once it is done."""

    def __init__(self, scorer: FusedScorer) -> None:
        self.scorer = scorer

    def proposals(self, texts: Sequence[str]) -> list[NoteProposals]:
        return [self.scorer.proposals(text) for text in texts]

    def fuse(
        self, texts: Sequence[str], proposals: Sequence[NoteProposals], combiner: SessionThread
    ) -> CallFusion:
        """The work on one call's notes that does not need the graph; the combiner's call on
        `combiner`'s thread."""
        scorer = self.scorer
        signals = [
            scorer.signals(text, found) for text, found in zip(texts, proposals, strict=True)
        ]
        if scorer.needs_logits:
            return CallFusion(signals, None, None, None)
        found = [scorer.candidate_rows(note) for note in signals]
        rows = np.concatenate([note.rows for note in found])  # (sum K_i, F)
        margins = combiner.start(partial(scorer.margins, rows))
        return CallFusion(signals, [note.columns for note in found], rows, margins)

    def probabilities(self, logits: np.ndarray, fused: CallFusion) -> np.ndarray:
        """Scores float32 (N, C) over the label space from the network's logits (N, C_network)
        and the fusion's work on the call's notes."""
        scores = np.zeros((len(logits), self.scorer.n_codes), dtype=np.float32)  # (N, C)
        for row, candidates in enumerate(self._candidates(logits, fused)):
            scores[row] = self.scorer.place(candidates, logits[row])
        return scores

    def _candidates(self, logits: np.ndarray, fused: CallFusion) -> list[CandidateScores]:
        if fused.columns is None or fused.rows is None or fused.margins is None:
            return [  # the combiner reads the network
                self.scorer.candidate_scores(signals, note_logits)
                for signals, note_logits in zip(fused.signals, logits, strict=True)
            ]
        probabilities = self.scorer.probabilities(fused.rows, fused.margins())
        ends = np.cumsum([len(columns) for columns in fused.columns])
        return [
            CandidateScores(columns, part)
            for columns, part in zip(fused.columns, np.split(probabilities, ends[:-1]), strict=True)
        ]
