"""Out-of-fold networks for the fusion (the `full` preset's recipe on the tiny network): each fold's
network trains on the other folds only, and the bundle's combiner reads the network's logit."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest

import training.plant as plant_module
from model.bundle import load_bundle
from model.fusion import FEATURES
from model.runtime import OnnxPredictor
from training import fold_networks
from training.datasets import CorpusSpec
from training.plant import TrainOptions, run_training
from training.presets import preset

# The bundle; per fold (ids trained on, ids scored); per fold (codes with a logit, codes carried).
FoldRecord = tuple[Path, list[tuple[set[str], set[str]]], list[tuple[set[str], set[str]]]]


@pytest.fixture(scope="module")
def fused_with_network(
    tmp_path_factory: pytest.TempPathFactory, synthetic_codiesp: Path
) -> FoldRecord:
    """A tiny bundle whose combiner reads out-of-fold networks; per fold, the ids the fold's
    network trained on and the ids it scored; and per fold, the codes its logits name and the
    codes its kept notes carry."""
    root = tmp_path_factory.mktemp("fold-networks")
    tiny = preset("tiny")
    settings = replace(tiny.fusion, network=True, network_candidates=2)
    seen: list[tuple[set[str], set[str]]] = []
    named: list[tuple[set[str], set[str]]] = []
    original = fold_networks.fold_state

    def recording_fold_state(state, kept, fold):  # type: ignore[no-untyped-def]
        sub = original(state, kept, fold)
        seen.append(({doc.id for doc in sub.train_docs}, set()))
        return sub

    original_logits = fold_networks.fold_network_logits

    def recording_logits(state):  # type: ignore[no-untyped-def]
        inner = original_logits(state)

        def logits(kept, scored):  # type: ignore[no-untyped-def]
            values = inner(kept, scored)
            seen[-1][1].update(doc.id for doc in scored)
            named.append(
                ({code for row in values for code in row}, {c for doc in kept for c in doc.codes})
            )
            return values

        return logits

    patch = pytest.MonkeyPatch()
    patch.setattr(plant_module, "preset", lambda name: replace(tiny, fusion=settings))
    patch.setattr(fold_networks, "fold_state", recording_fold_state)
    patch.setattr("training.bundling.fold_network_logits", recording_logits)
    try:
        spec = CorpusSpec("codiesp", str(synthetic_codiesp), lang="en", codes="D")
        run_training(
            TrainOptions(spec=spec, out=root / "bundle", preset="tiny", work_dir=root / "work")
        )
    finally:
        patch.undo()
    return root / "bundle", seen, named


def test_each_fold_network_never_trains_on_the_notes_it_scores(
    fused_with_network: FoldRecord,
) -> None:
    _, seen, _ = fused_with_network
    assert len(seen) == preset("tiny").fusion.folds
    scored_everywhere: set[str] = set()
    for trained_on, scored in seen:
        assert trained_on and scored
        assert not trained_on & scored
        scored_everywhere |= scored
    assert all(scored_everywhere == trained | scored for trained, scored in seen)


def test_the_combiner_reads_the_network_logit(
    fused_with_network: FoldRecord,
) -> None:
    bundle_dir, _, _ = fused_with_network
    metadata = load_bundle(bundle_dir).metadata
    assert metadata.fusion is not None
    assert metadata.fusion["uses_network"] is True
    assert metadata.fusion["network_candidates"] == 2
    assert any(name.startswith("fusion/fold-") for name in metadata.training["seconds"])
    predictor = OnnxPredictor(bundle_dir)
    scores = predictor.scores(["Fever and cough. Hypertension with blood pressure elevated."])
    assert scores.shape == (1, len(predictor.codes)) and np.isfinite(scores).all()
    combiner = onnx.load(str(bundle_dir / "combiner.onnx"))
    (trees,) = combiner.graph.node
    (split_features,) = [attr.ints for attr in trees.attribute if attr.name == "nodes_featureids"]
    assert FEATURES.index("network_logit") in split_features  # the trees do split on it


def test_a_code_no_kept_note_carries_gets_no_logit(
    fused_with_network: FoldRecord,
) -> None:
    """As the served network has no logit for a code training never saw, a fold network has none
    for a code its kept notes never carry, so "no logit" means the same in fitting and serving."""
    _, _, named = fused_with_network
    assert len(named) == preset("tiny").fusion.folds
    for logit_codes, carried in named:
        assert logit_codes and logit_codes == carried
