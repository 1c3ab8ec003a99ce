"""How one call's work shares a call's cores: the graph on a thread of its own, the fusion's
Python beside it on the caller's thread.

ONNX Runtime releases the GIL while the graph runs, so where a call may use two cores or more the
caller reads a fused bundle's context rules, evidence spans, feature rows and combiner (about
4 ms of Python per CodiEsp note) while the graph decodes. A request of several notes is coded in
a pipeline of graph calls: while call k runs, the caller reads the fusion of call k and hands
back call k-1 (ranking, evidence, highlights), so the Python of a request of 16 notes is no
longer waited for by an idle graph (docs/BENCHMARKS.md has the figures).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from model.fusion import CandidateScores, FusedScorer, NoteProposals, NoteSignals

# Graph calls running beside their callers' Python at once (requests served side by side); more
# wait their turn.
GRAPH_WORKERS = 8


def usable_cores() -> int:
    """The cores this process may run on (its affinity where the system tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class GraphThread:
    """Runs the graph's calls on a worker thread (`own_thread`), else in the caller's thread."""

    def __init__(self, session: ort.InferenceSession, *, own_thread: bool) -> None:
        self._session = session
        self._pool = (
            ThreadPoolExecutor(GRAPH_WORKERS, thread_name_prefix="plant-icd-graph")
            if own_thread
            else None
        )

    @property
    def own_thread(self) -> bool:
        return self._pool is not None

    def start(self, fetch: list[str], feed: dict[str, np.ndarray]) -> Callable[[], list[object]]:
        """Start one graph call; the returned call waits for its outputs (in `fetch` order).

        With a thread of its own, this returns once the graph runs: a worker that had to win
        the GIL from a caller busy in Python would wait up to the interpreter's switch interval
        (5 ms) before it even started."""
        if self._pool is None:
            outputs = self._session.run(fetch, feed)
            return lambda: outputs
        running = threading.Event()
        future = self._pool.submit(self._run, fetch, feed, running)
        running.wait()
        return future.result

    def _run(
        self, fetch: list[str], feed: dict[str, np.ndarray], running: threading.Event
    ) -> list[object]:
        running.set()  # the caller wakes once `run` below lets go of the GIL
        return self._session.run(fetch, feed)


@dataclass(frozen=True)
class NoteFusion:
    """The fusion's work on one note that does not wait for the graph: everything its branches
    read, and its candidates' probabilities unless the combiner reads the network's logits."""

    signals: NoteSignals
    candidates: CandidateScores | None


class RuntimeFusion:
    """A fused bundle's scorer as a call uses it: proposals first (they decide what the graph
    decodes), the rest while the graph runs, the label-space scores once it is done."""

    def __init__(self, scorer: FusedScorer) -> None:
        self.scorer = scorer

    def proposals(self, texts: Sequence[str]) -> list[NoteProposals]:
        return [self.scorer.proposals(text) for text in texts]

    def fuse(self, texts: Sequence[str], proposals: Sequence[NoteProposals]) -> list[NoteFusion]:
        """The work on the notes that does not need the graph."""
        scorer = self.scorer
        done = []
        for text, note_proposals in zip(texts, proposals, strict=True):
            signals = scorer.signals(text, note_proposals)
            ahead = None if scorer.needs_logits else scorer.candidate_scores(signals)
            done.append(NoteFusion(signals, ahead))
        return done

    def probabilities(self, logits: np.ndarray, fused: Sequence[NoteFusion]) -> np.ndarray:
        """Scores float32 (N, C) over the label space from the network's logits (N, C_network)
        and the fusion's work on each note."""
        scores = np.zeros((len(logits), self.scorer.n_codes), dtype=np.float32)  # (N, C)
        for row, (note_logits, note) in enumerate(zip(logits, fused, strict=True)):
            candidates = note.candidates
            if candidates is None:  # the combiner reads the network: scored now
                candidates = self.scorer.candidate_scores(note.signals, note_logits)
            scores[row] = self.scorer.place(candidates, note_logits)
        return scores
