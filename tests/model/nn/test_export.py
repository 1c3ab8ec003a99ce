"""ONNX export: the graph ONNX Runtime serves must give the torch model's logits, top codes and
attention rows for any batch size and note length. These tests export networks without a first
stage (full decoding, as every bundle before format 3); test_shortlist.py covers two-stage
decoding."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import Tensor

from model.nn.export import export_onnx
from model.nn.network import PlantClassifier, build_config

VOCAB = 30  # small, so notes repeat tokens and the planted/static branches see real ties
CODES = 9
WINDOW = 8
TOP_K = 4


def tiny_classifier(**overrides: object) -> PlantClassifier:
    torch.manual_seed(0)
    values: dict[str, object] = {
        "emb_dim": 12,
        "hidden_dim": 16,
        "n_layers": 2,
        "chunk_len": 5,
        "window": WINDOW,
        "inattention_k": 3,
        "l2r_dim": 4,
        "laat_dim": 8,
        "first_stage": False,
    }
    values.update(overrides)
    model = PlantClassifier(build_config(vocab_size=VOCAB, n_codes=CODES, **values))
    branches = model.config.branches
    if "planted" in branches:
        factors = (torch.randn(VOCAB, 4), torch.randn(VOCAB), torch.randn(CODES, 4))
        model.plant(*factors, torch.randn(CODES))
    if "static" in branches:
        model.set_mutual_information(torch.rand(VOCAB, CODES))
    with torch.no_grad():
        # Distinct biases: an all-padding note's logits are the biases, and must not tie.
        model.decoder.output_bias.copy_(torch.randn(CODES))
    return model.eval()


def padded_batch(lengths: list[int], seed: int = 0) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, VOCAB, (len(lengths), max(lengths)), generator=generator)
    attention_mask = torch.zeros_like(input_ids)
    for row, length in enumerate(lengths):
        attention_mask[row, :length] = 1
    return input_ids * attention_mask, attention_mask


def run_graph(session: ort.InferenceSession, input_ids: Tensor, attention_mask: Tensor) -> list:
    return session.run(
        None, {"input_ids": input_ids.numpy(), "attention_mask": attention_mask.numpy()}
    )


def assert_matches_torch(
    model: PlantClassifier, session: ort.InferenceSession, lengths: list[int], seed: int = 0
) -> None:
    input_ids, attention_mask = padded_batch(lengths, seed)
    with torch.no_grad():
        logits, attention = model(input_ids, attention_mask)
    onnx_logits, top_codes, top_attention = run_graph(session, input_ids, attention_mask)
    k = min(TOP_K, CODES)
    assert onnx_logits.shape == (len(lengths), CODES) and onnx_logits.dtype == np.float32
    assert top_codes.shape == (len(lengths), k) and top_codes.dtype == np.int64
    assert top_attention.shape == (len(lengths), k, max(lengths))
    np.testing.assert_allclose(onnx_logits, logits.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_array_equal(top_codes, logits.topk(k, dim=1).indices.numpy())
    rows = np.take_along_axis(attention.numpy(), top_codes[:, :, None], axis=1)
    np.testing.assert_allclose(top_attention, rows, atol=1e-5, rtol=0)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[PlantClassifier, Path]:
    model = tiny_classifier()
    path = export_onnx(model, tmp_path_factory.mktemp("graph") / "model.onnx", top_k=TOP_K)
    return model, path


@pytest.fixture(scope="module")
def session(exported: tuple[PlantClassifier, Path]) -> ort.InferenceSession:
    return ort.InferenceSession(str(exported[1]), providers=["CPUExecutionProvider"])


def test_graph_has_the_contract_inputs_outputs_and_dynamic_axes(
    exported: tuple[PlantClassifier, Path],
) -> None:
    graph = onnx.load(str(exported[1])).graph

    def dims(value: onnx.ValueInfoProto) -> list[str | int]:
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    inputs = {value.name: value for value in graph.input}
    outputs = {value.name: value for value in graph.output}
    assert list(inputs) == ["input_ids", "attention_mask"]
    assert list(outputs) == ["logits", "top_codes", "top_attention"]
    assert dims(inputs["input_ids"]) == dims(inputs["attention_mask"]) == ["batch", "tokens"]
    assert dims(outputs["logits"]) == ["batch", CODES]
    assert dims(outputs["top_codes"]) == ["batch", TOP_K]
    assert dims(outputs["top_attention"]) == ["batch", TOP_K, "tokens"]
    int64, float32 = onnx.TensorProto.INT64, onnx.TensorProto.FLOAT
    assert inputs["input_ids"].type.tensor_type.elem_type == int64
    assert outputs["top_codes"].type.tensor_type.elem_type == int64
    assert outputs["top_attention"].type.tensor_type.elem_type == float32


def test_onnx_runtime_matches_torch_on_a_padded_batch_spanning_windows(
    exported: tuple[PlantClassifier, Path], session: ort.InferenceSession
) -> None:
    # Three notes of different lengths; the longest spans three windows, none is a multiple.
    assert_matches_torch(exported[0], session, [21, 13, 6])


@pytest.mark.parametrize(
    "lengths",
    [
        [2],  # shorter than inattention_k and than the window
        [1, 1],
        [WINDOW],  # exactly one window
        [3 * WINDOW + 1, 5, WINDOW + 1, 17, 2],  # another batch size, four windows
        [40, 0],  # an all-padding note next to a long one
    ],
)
def test_graph_accepts_other_batch_sizes_and_lengths(
    exported: tuple[PlantClassifier, Path], session: ort.InferenceSession, lengths: list[int]
) -> None:
    assert_matches_torch(exported[0], session, lengths, seed=len(lengths))


def test_all_tied_mutual_information_keeps_the_same_positions_as_torch(
    tmp_path: Path,
) -> None:
    # Every static score ties; torch and ONNX Runtime must still keep the same k positions.
    model = tiny_classifier(branches=("static",))
    model.set_mutual_information(torch.ones(VOCAB, CODES))
    path = export_onnx(model, tmp_path / "tied.onnx", top_k=TOP_K)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    input_ids, attention_mask = padded_batch([19, 7])
    _, _, top_attention = run_graph(session, input_ids, attention_mask)
    kept = top_attention[0] > 0  # (K, T): 3 per window, the earliest ones
    expected = np.zeros(19, dtype=bool)
    expected[[0, 1, 2, 8, 9, 10, 16, 17, 18]] = True
    assert (kept == expected).all()
    assert_matches_torch(model, session, [19, 7])


def test_top_k_is_capped_by_the_number_of_codes_and_training_mode_is_restored(
    tmp_path: Path,
) -> None:
    model = tiny_classifier().train()
    path = export_onnx(model, tmp_path / "nested" / "all.onnx", top_k=50)
    assert path == tmp_path / "nested" / "all.onnx" and path.is_file()
    assert model.training and all(module.training for module in model.modules())
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    input_ids, attention_mask = padded_batch([10, 4])
    _, top_codes, top_attention = run_graph(session, input_ids, attention_mask)
    assert top_codes.shape == (2, CODES) and top_attention.shape == (2, CODES, 10)
    assert sorted(top_codes[0].tolist()) == list(range(CODES))


def test_transformer_encoder_exports_too(tmp_path: Path) -> None:
    from transformers import AutoConfig, AutoModel

    torch.manual_seed(0)
    hf_config = AutoConfig.for_model(
        "bert",
        vocab_size=VOCAB,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=8,
    )
    AutoModel.from_config(hf_config).save_pretrained(tmp_path / "bert")
    model = tiny_classifier(kind="transformer", hf_path=str(tmp_path / "bert"), chunk_len=8)
    path = export_onnx(model, tmp_path / "bert.onnx", top_k=TOP_K)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert_matches_torch(model, session, [21, 13, 6])
    assert_matches_torch(model, session, [3], seed=3)
