"""The runtime's side of a fused bundle: the fusion's work on a call's notes, on its own thread
beside the graph where a call may use two cores or more, and the label-space scores it gives.

The graph needs only what names each note's candidates (`NoteProposals`: the lexicon's matches
and the neighbours' votes), so the rest (context rules, evidence spans, feature rows, combiner:
about 4 ms of Python per CodiEsp note) runs while the graph runs, which releases the GIL. The
fusion is the worker, not the graph: the caller must take the GIL back as soon as the graph is
done, and a worker busy in Python would hold it for up to the interpreter's switch interval.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import partial

import numpy as np

from model.fusion import CandidateScores, FusedScorer, NoteProposals, NoteSignals

# Calls whose fusion work runs beside their graph at once; more wait their turn.
FUSION_WORKERS = 8


def usable_cores() -> int:
    """The cores this process may run on (its affinity where the system tells it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


@dataclass(frozen=True)
class NoteFusion:
    """The fusion's work on one note that does not wait for the graph: everything its branches
    read, and its candidates' probabilities unless the combiner reads the network's logits."""

    signals: NoteSignals
    candidates: CandidateScores | None


class FusionThread:
    """A fused bundle's scorer as a call uses it: proposals first (they decide what the graph
    decodes), then the rest on a worker thread when `own_thread`, else when the call asks."""

    def __init__(self, scorer: FusedScorer, *, own_thread: bool) -> None:
        self.scorer = scorer
        self._pool = (
            ThreadPoolExecutor(FUSION_WORKERS, thread_name_prefix="plant-icd-fusion")
            if own_thread
            else None
        )

    @property
    def own_thread(self) -> bool:
        return self._pool is not None

    def proposals(self, texts: Sequence[str]) -> list[NoteProposals]:
        return [self.scorer.proposals(text) for text in texts]

    def start(
        self, texts: Sequence[str], proposals: Sequence[NoteProposals]
    ) -> Callable[[], list[NoteFusion]]:
        """Start the work on the notes that does not need the graph; the returned call waits
        for it (on the worker thread where there is one, else it does the work)."""
        work = partial(self._fuse, list(texts), list(proposals))
        if self._pool is None:
            return work
        return self._pool.submit(work).result

    def _fuse(self, texts: Sequence[str], proposals: Sequence[NoteProposals]) -> list[NoteFusion]:
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
