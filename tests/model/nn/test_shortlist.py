"""Two-stage decoding: the first stage, the shortlist with forced codes, the complete ranking, and
the exported graph against torch (model/nn/shortlist.py, PlantClassifier.shortlisted, export)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import Tensor

from model.metadata import GRAPH_INPUTS, GRAPH_OUTPUTS, SHORTLIST_INPUTS, SHORTLIST_OUTPUTS
from model.nn.config import PlantConfig
from model.nn.export import export_onnx
from model.nn.network import PlantClassifier
from model.nn.shortlist import complete_ranking, pool_states, select_shortlist
from tests.model.nn.test_export import CODES, TOP_K, padded_batch, tiny_classifier


def shortlisted_classifier(**overrides: object) -> PlantClassifier:
    model = tiny_classifier(first_stage=True, **overrides)
    with torch.no_grad():  # a first stage that ranks the codes, not all at the bias
        model.decoder.first_stage.score.weight.normal_(0.0, 1.0)
    return model.eval()


def forced_mask(n_notes: int, forced: dict[int, list[int]]) -> Tensor:
    mask = torch.zeros(n_notes, CODES, dtype=torch.bool)
    for note, codes in forced.items():
        mask[note, codes] = True
    return mask


def run_graph(
    session: ort.InferenceSession, input_ids: Tensor, mask: Tensor, forced: Tensor, size: int
) -> dict[str, np.ndarray]:
    feed = {
        GRAPH_INPUTS[0]: input_ids.numpy(),
        GRAPH_INPUTS[1]: mask.numpy(),
        SHORTLIST_INPUTS[0]: forced.numpy(),
        SHORTLIST_INPUTS[1]: np.array(size, dtype=np.int64),
    }
    names = [*GRAPH_OUTPUTS, *SHORTLIST_OUTPUTS]
    return dict(zip(names, session.run(names, feed), strict=True))


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[PlantClassifier, Path]:
    model = shortlisted_classifier()
    return model, export_onnx(model, tmp_path_factory.mktemp("graph") / "model.onnx", TOP_K)


@pytest.fixture(scope="module")
def session(exported: tuple[PlantClassifier, Path]) -> ort.InferenceSession:
    return ort.InferenceSession(str(exported[1]), providers=["CPUExecutionProvider"])


def test_graph_declares_the_shortlist_inputs_and_outputs(
    exported: tuple[PlantClassifier, Path],
) -> None:
    graph = onnx.load(str(exported[1])).graph
    assert [value.name for value in graph.input] == [*GRAPH_INPUTS, *SHORTLIST_INPUTS]
    assert [value.name for value in graph.output] == [*GRAPH_OUTPUTS, *SHORTLIST_OUTPUTS]
    forced = graph.input[2].type.tensor_type
    assert forced.elem_type == onnx.TensorProto.BOOL
    assert [d.dim_param or d.dim_value for d in forced.shape.dim] == ["batch", CODES]
    top_codes = graph.output[1].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in top_codes] == ["batch", TOP_K]


@pytest.mark.parametrize("size", [CODES, CODES + 5])
def test_shortlist_covering_every_code_gives_full_decoding(
    exported: tuple[PlantClassifier, Path], session: ort.InferenceSession, size: int
) -> None:
    model = exported[0]
    input_ids, mask = padded_batch([21, 13, 6])
    forced = forced_mask(3, {1: [0]})
    with torch.no_grad():
        full_logits, full_attention = model(input_ids, mask)
        out = model.shortlisted(input_ids, mask, forced, torch.tensor(size), TOP_K)
    assert out.shortlist.shape == (3, CODES)
    torch.testing.assert_close(out.logits, full_logits, atol=1e-5, rtol=0)
    answers = run_graph(session, input_ids, mask, forced, size)
    expected_top = full_logits.topk(TOP_K, dim=1).indices.numpy()
    np.testing.assert_array_equal(answers["top_codes"], expected_top)
    np.testing.assert_allclose(answers["logits"], full_logits.numpy(), atol=1e-4, rtol=0)
    rows = np.take_along_axis(full_attention.numpy(), expected_top[:, :, None], axis=1)
    np.testing.assert_allclose(answers["top_attention"], rows, atol=1e-5, rtol=0)


@pytest.mark.parametrize(
    ("lengths", "forced", "size"),
    [
        ([21, 13, 6], {0: [8], 2: [1, 7]}, 5),  # forced codes the first stage may not pick
        ([3 * 8 + 1, 5, 9, 17, 2], {}, 4),  # another batch size, no forced code, S = K
        ([40, 0], {1: [2, 3, 4, 5, 6, 7]}, 5),  # an all-padding note; more forced than S
        ([2], {0: [0]}, 1),  # S below K: K codes are decoded all the same
    ],
)
def test_onnx_runtime_matches_torch_with_a_shortlist_smaller_than_the_codes(
    exported: tuple[PlantClassifier, Path],
    session: ort.InferenceSession,
    lengths: list[int],
    forced: dict[int, list[int]],
    size: int,
) -> None:
    model = exported[0]
    input_ids, mask = padded_batch(lengths, seed=len(lengths))
    forced_codes = forced_mask(len(lengths), forced)
    with torch.no_grad():
        out = model.shortlisted(input_ids, mask, forced_codes, torch.tensor(size), TOP_K)
    answers = run_graph(session, input_ids, mask, forced_codes, size)
    most_forced = max((len(codes) for codes in forced.values()), default=0)
    k = min(CODES, max(size, TOP_K, most_forced))
    assert answers["shortlist"].shape == (len(lengths), k)
    np.testing.assert_array_equal(answers["shortlist"], out.shortlist.numpy())
    np.testing.assert_allclose(answers["logits"], out.logits.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(answers["first_stage"], out.first_stage.numpy(), atol=1e-4)
    best = out.decoded.topk(TOP_K, dim=1).indices
    np.testing.assert_array_equal(answers["top_codes"], out.shortlist.gather(1, best).numpy())
    rows = np.take_along_axis(out.attention.numpy(), best.numpy()[:, :, None], axis=1)
    np.testing.assert_allclose(answers["top_attention"], rows, atol=1e-5, rtol=0)
    for note, codes in forced.items():  # forced codes are always decoded
        assert set(codes) <= set(answers["shortlist"][note].tolist())


def test_decoded_codes_match_full_decoding_and_the_rest_rank_below(
    exported: tuple[PlantClassifier, Path],
) -> None:
    model = exported[0]
    input_ids, mask = padded_batch([21, 13, 6])
    with torch.no_grad():
        full_logits, full_attention = model(input_ids, mask)
        out = model.shortlisted(input_ids, mask, forced_mask(3, {0: [3]}), torch.tensor(5), 2)
    # Decoding a code alone or with every other code gives the same logit and attention.
    torch.testing.assert_close(out.decoded, full_logits.gather(1, out.shortlist), atol=1e-5, rtol=0)
    rows = out.shortlist.unsqueeze(-1).expand(-1, -1, full_attention.size(2))
    torch.testing.assert_close(out.attention, full_attention.gather(1, rows), atol=1e-5, rtol=0)
    for note in range(3):
        inside = set(out.shortlist[note].tolist())
        outside = [code for code in range(CODES) if code not in inside]
        assert len(outside) == CODES - 5
        assert out.logits[note, outside].max() < out.logits[note, sorted(inside)].min()
        # Outside the shortlist the first stage's order is kept.
        order = out.logits[note, outside].argsort().tolist()
        assert order == out.first_stage[note, outside].argsort().tolist()


def test_forced_codes_come_first_and_ties_go_to_the_lower_code() -> None:
    first = torch.tensor([[0.5, 2.0, 0.5, 0.5, -1.0, 3.0]])  # codes 0, 2 and 3 tie
    forced = torch.tensor([[False, False, False, False, True, False]])
    shortlist = select_shortlist(first, forced, torch.tensor(3), floor=1)
    assert shortlist.tolist() == [[4, 5, 1]]
    shortlist = select_shortlist(first, forced, torch.tensor(4), floor=1)
    assert shortlist.tolist() == [[4, 5, 1, 0]]
    every = torch.ones_like(forced)  # more forced codes than S: all of them are decoded
    assert sorted(select_shortlist(first, every, torch.tensor(2), 1)[0].tolist()) == list(range(6))
    logits = complete_ranking(first, shortlist, torch.tensor([[9.0, 8.0, 7.0, 6.0]]))
    assert logits[0, [4, 5, 1, 0]].tolist() == [9.0, 8.0, 7.0, 6.0]
    assert logits[0, [2, 3]].max() < 6.0


def test_pooling_ignores_padding_and_an_empty_note_pools_to_zeros() -> None:
    states = torch.randn(2, 5, 3)
    mask = torch.tensor([[1, 1, 0, 0, 0], [0, 0, 0, 0, 0]])
    pooled = pool_states(states, mask)
    torch.testing.assert_close(pooled[0], torch.cat([states[0, :2].mean(0), states[0, :2].amax(0)]))
    assert pooled[1].abs().max() == 0 and torch.isfinite(pooled).all()


def test_first_stage_is_trained_output_and_an_old_config_has_none() -> None:
    model = shortlisted_classifier()
    input_ids, mask = padded_batch([9, 4])
    logits, attention, first = model(input_ids, mask, first_stage=True)
    assert first.shape == logits.shape == (2, CODES) and attention.shape == (2, CODES, 9)
    first.sum().backward()
    assert model.decoder.first_stage.score.weight.grad is not None
    # A config written before the first stage existed rebuilds a network without one.
    values = model.config.to_dict()
    del values["first_stage"]
    old = PlantConfig.from_dict(values)
    assert old.first_stage is False
    with pytest.raises(ValueError, match="no first stage"):
        PlantClassifier(old)(input_ids, mask, first_stage=True)
