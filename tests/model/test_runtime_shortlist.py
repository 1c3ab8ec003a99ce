"""OnnxPredictor over a bundle with two-stage decoding: S from the bundle or overridden at load,
forced codes (training prior, fusion candidates) always decoded, a complete ranking, and full
decoding when S covers every code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from model.bundle import BundleError
from model.runtime import OnnxPredictor, sigmoid
from tests.model.bundle_factory import add_fusion, build_tiny_bundle
from tests.model.shortlist_bundle import SHORTLIST_CODES, TOP_K, build_shortlist_bundle

NOTES = [
    "Patient admitted with high fever and cough.",
    "Paciente con hipertensión.",
    "History of diabetes and chest pain, treated at hospital today with care and rest.",
    "Neumonía con fiebre y tos.",
]
N_CODES = len(SHORTLIST_CODES)


@pytest.fixture(scope="module")
def shortlisted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    # Codes 7 and 8 (train counts 17, 18) are in enough training notes to be always decoded.
    return build_shortlist_bundle(tmp_path_factory.mktemp("sl") / "b", size=3, min_train_notes=17)


def torch_logits(predictor: OnnxPredictor, model: Any, texts: list[str]) -> np.ndarray:
    """Full decoding in torch of the notes as the runtime tokenizes them, one at a time."""
    rows = []
    for note in predictor.tokenize(texts):
        input_ids, mask = predictor.tokenizer.pad_batch([note])
        with torch.no_grad():
            logits, _ = model(torch.from_numpy(input_ids), torch.from_numpy(mask))
        rows.append(logits[0].numpy())
    return np.stack(rows)


def test_shortlist_size_comes_from_the_bundle_or_the_override(
    shortlisted: tuple[Path, Any],
) -> None:
    predictor = OnnxPredictor(shortlisted[0], threads=1)
    assert predictor.shortlist_size == 3 and predictor.precision == "fp32"
    assert OnnxPredictor(shortlisted[0], threads=1, shortlist_size=5).shortlist_size == 5
    with pytest.raises(ValueError, match="shortlist_size must be a positive"):
        OnnxPredictor(shortlisted[0], shortlist_size=0)


def test_bundle_without_a_shortlist_decodes_every_code_and_refuses_an_s(tmp_path: Path) -> None:
    bundle_dir = build_tiny_bundle(tmp_path / "full")
    assert OnnxPredictor(bundle_dir).shortlist_size is None
    with pytest.raises(ValueError, match=r"format_version 3\) has no shortlist"):
        OnnxPredictor(bundle_dir, shortlist_size=4)


def test_graph_and_bundle_json_must_agree_on_the_shortlist(tmp_path: Path) -> None:
    bundle_dir = build_tiny_bundle(tmp_path / "full")
    path = bundle_dir / "bundle.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    raw["shortlist"] = {"size": 2, "min_train_notes": 0}
    path.write_text(json.dumps(raw), encoding="utf-8")
    with pytest.raises(BundleError, match="with a shortlist\\) needs inputs"):
        OnnxPredictor(bundle_dir)


@pytest.mark.parametrize("size", [N_CODES, 100])
def test_shortlist_covering_every_code_scores_as_full_decoding(
    shortlisted: tuple[Path, Any], size: int
) -> None:
    predictor = OnnxPredictor(shortlisted[0], threads=1, batch_size=2, shortlist_size=size)
    expected = sigmoid(torch_logits(predictor, shortlisted[1], NOTES))
    np.testing.assert_allclose(predictor.scores(NOTES), expected, atol=1e-5, rtol=0)
    for ranked, row in zip(predictor.predict(NOTES, top_k=TOP_K), expected, strict=True):
        assert [p.code for p in ranked] == [SHORTLIST_CODES[i] for i in np.argsort(-row)[:TOP_K]]
        assert all(p.highlights for p in ranked)  # the top codes have attention rows


def test_decoded_codes_keep_their_logits_and_the_rest_rank_below(
    shortlisted: tuple[Path, Any],
) -> None:
    predictor = OnnxPredictor(shortlisted[0], threads=1, batch_size=3)
    full = sigmoid(torch_logits(predictor, shortlisted[1], NOTES))
    scores = predictor.scores(NOTES)
    run = predictor.shortlists(NOTES)
    assert run.first_stage.shape == (len(NOTES), N_CODES)
    for note, decoded in enumerate(run.decoded):
        # S = 3 plus the codes always decoded (7, 8): never fewer than S or K codes.
        assert len(decoded) >= 3 and {7, 8} <= set(decoded.tolist())
        np.testing.assert_array_equal(run.forced[note], [7, 8])
        np.testing.assert_allclose(scores[note, decoded], full[note, decoded], atol=1e-5)
        outside = np.setdiff1d(np.arange(N_CODES), decoded)
        assert scores[note, outside].max() < scores[note, decoded].min()
        # Outside the shortlist, the first stage's order.
        np.testing.assert_array_equal(
            np.argsort(scores[note, outside]), np.argsort(run.first_stage[note, outside])
        )


def _uses_network(bundle_dir: Path) -> None:
    """Mark the bundle's combiner as one that reads the network logit (the factory's ignores it)."""
    path = bundle_dir / "bundle.json"
    metadata = json.loads(path.read_text())
    metadata["fusion"]["uses_network"] = True
    path.write_text(json.dumps(metadata))


NOTES = ["Neumonía con fiebre y tos.", "Paciente con hipertensión."]


def test_a_combiner_that_reads_the_network_has_every_candidate_decoded(tmp_path: Path) -> None:
    bundle_dir, _ = build_shortlist_bundle(tmp_path / "fused", size=1)
    add_fusion(bundle_dir)
    _uses_network(bundle_dir)
    predictor = OnnxPredictor(bundle_dir, threads=1)
    assert predictor.metadata.shortlist == {"size": 1, "min_train_notes": 0}
    run = predictor.shortlists(NOTES)
    # The lexicon names J18.9 (5), R50.9 (0) and R05 (1) in the first note, I10 (2) in the second.
    assert set(run.forced[0].tolist()) >= {0, 1, 5} and 2 in run.forced[1].tolist()
    for forced, decoded in zip(run.forced, run.decoded, strict=True):
        assert set(forced.tolist()) <= set(decoded.tolist())
    ranked = predictor.predict(NOTES[:1], top_k=3)[0]
    assert {p.code for p in ranked} == {"J18.9", "R50.9", "R05"}


def test_without_the_network_in_the_combiner_only_the_prior_codes_are_forced(
    tmp_path: Path,
) -> None:
    """Decoding then serves only the codes no branch proposes and attention evidence: the graph
    starts before the lexicon and neighbours, so nothing they name is forced, only the codes
    above the training-prior floor; the ranking is the combiner's all the same."""
    bundle_dir, _ = build_shortlist_bundle(tmp_path / "fused", size=1, min_train_notes=17)
    add_fusion(bundle_dir)
    predictor = OnnxPredictor(bundle_dir, threads=1)
    assert predictor.metadata.fusion is not None
    assert predictor.metadata.fusion["uses_network"] is False
    run = predictor.shortlists(NOTES)
    for forced, decoded in zip(run.forced, run.decoded, strict=True):
        np.testing.assert_array_equal(forced, [7, 8])  # train counts 17 and 18
        assert set(forced.tolist()) <= set(decoded.tolist())
    ranked = predictor.predict(NOTES[:1], top_k=3)[0]
    assert {p.code for p in ranked} == {"J18.9", "R50.9", "R05"}


class _Recorded:
    """A session whose runs are logged in `events` before they run."""

    def __init__(self, session: Any, events: list[str]) -> None:
        self._session, self._events = session, events

    def run(self, *args: Any, **kwargs: Any) -> Any:
        self._events.append("graph")
        return self._session.run(*args, **kwargs)


@pytest.mark.parametrize(("reads_network", "order"), [(False, "graph"), (True, "proposals")])
def test_the_graph_waits_for_the_proposals_only_where_the_combiner_reads_it(
    tmp_path: Path, reads_network: bool, order: str
) -> None:
    bundle_dir, _ = build_shortlist_bundle(tmp_path / "fused", size=1)
    add_fusion(bundle_dir)
    if reads_network:
        _uses_network(bundle_dir)
    predictor = OnnxPredictor(bundle_dir, threads=1)
    events: list[str] = []
    predictor._session = _Recorded(predictor._session, events)
    fusion = predictor._fusion
    assert fusion is not None
    proposals = fusion.proposals

    def recorded_proposals(texts: Any) -> Any:
        events.append("proposals")
        return proposals(texts)

    fusion.proposals = recorded_proposals  # type: ignore[method-assign]
    predictor.predict(NOTES[:1])
    assert events[0] == order and sorted(events[:2]) == ["graph", "proposals"]
