from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from model.bundle import load_bundle
from model.fusion import FusedScorer
from model.overlap import RuntimeFusion, SessionThread
from tests.model.bundle_factory import add_fusion, build_tiny_bundle

TEXTS = [
    "El paciente niega fiebre. Refiere tos.",
    "Apendicitis aguda y dolor toracico.",
    "Sin hallazgos.",  # no candidate of its own: an empty block between two others
    "Madre con apendicitis. Fiebre de tres dias.",
]


def test_work_runs_at_once_without_a_thread_of_its_own() -> None:
    ran: list[str] = []
    waiting = SessionThread(own_thread=False).start(
        lambda: ran.append(threading.current_thread().name) or 7
    )
    assert ran == [threading.current_thread().name]  # before its result is asked for
    assert waiting() == 7


def test_work_runs_on_the_session_thread_and_its_errors_reach_the_caller() -> None:
    session = SessionThread(own_thread=True)
    assert session.start(lambda: threading.current_thread().name)().startswith("plant-icd-session")

    def failing() -> None:
        raise RuntimeError("the graph failed")

    waiting = session.start(failing)
    with pytest.raises(RuntimeError, match="the graph failed"):
        waiting()


@pytest.mark.parametrize("own_thread", [False, True])
def test_one_combiner_call_for_a_call_s_notes_scores_each_note_as_alone(
    tmp_path: Path, own_thread: bool
) -> None:
    """The rows of all of a call's notes go to the combiner at once; each note's scores are those
    of scoring it alone, whatever its neighbours in the call (one has no candidate)."""
    bundle = load_bundle(add_fusion(build_tiny_bundle(tmp_path)))
    scorer = FusedScorer(bundle)
    fusion = RuntimeFusion(scorer)
    fused = fusion.fuse(TEXTS, fusion.proposals(TEXTS), SessionThread(own_thread=own_thread))
    assert fused.columns is not None and 0 in [len(columns) for columns in fused.columns]
    n_network = bundle.metadata.n_network_codes
    logits = np.random.default_rng(0).normal(size=(len(TEXTS), n_network)).astype(np.float32)
    together = fusion.probabilities(logits, fused)
    alone = [
        scorer.place(scorer.candidate_scores(scorer.signals(text)), note_logits)
        for text, note_logits in zip(TEXTS, logits, strict=True)
    ]
    np.testing.assert_array_equal(together, np.stack(alone))
