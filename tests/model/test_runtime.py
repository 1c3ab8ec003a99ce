"""OnnxPredictor over a tiny real bundle, the highlight rules, and the runtime's lack of torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from model.bundle import BundleError, BundleMetadata, load_bundle, write_bundle
from model.runtime import OnnxPredictor, sigmoid
from tests.model.bundle_factory import DEFAULT_CODES, build_tiny_bundle, graph_parameters

REPO = Path(__file__).resolve().parents[2]

NOTES = [
    "Patient admitted with high fever and cough.",
    "Paciente con hipertensión.",
    "History of diabetes and chest pain, treated at hospital today with care and rest.",
    "Neumonía con fiebre y tos.",
    "Hypertension.",
]


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bundle(tmp_path_factory.mktemp("runtime") / "bundle", max_tokens=16)


@pytest.fixture(scope="module")
def predictor(bundle_dir: Path) -> OnnxPredictor:
    return OnnxPredictor(bundle_dir, threads=1, batch_size=2)


def _raw_outputs(predictor: OnnxPredictor, text: str) -> list[np.ndarray]:
    """The graph's outputs for one note, straight from a fresh ONNX Runtime session."""
    note = predictor.tokenize([text])[0]
    input_ids, attention_mask = predictor.tokenizer.pad_batch([note])
    session = ort.InferenceSession(
        str(predictor.bundle.graph_path), providers=["CPUExecutionProvider"]
    )
    return list(session.run(None, {"input_ids": input_ids, "attention_mask": attention_mask}))


# -- scores -----------------------------------------------------------------------------------


def test_codes_and_metadata_come_from_the_bundle(predictor: OnnxPredictor) -> None:
    assert list(predictor.codes) == list(DEFAULT_CODES)
    assert predictor.name == "tiny-plant" and predictor.version == "0.0.1-test"
    assert predictor.metadata.max_tokens == 16
    np.testing.assert_allclose(predictor.thresholds, [0.3, 0.4, 0.5, 0.6, 0.3, 0.4])


def test_scores_are_sigmoid_of_hand_computed_logits(
    predictor: OnnxPredictor, bundle_dir: Path
) -> None:
    embedding, bias = graph_parameters(bundle_dir)  # (V, C), (C,)
    scores = predictor.scores(NOTES)
    assert scores.dtype == np.float32 and scores.shape == (len(NOTES), len(DEFAULT_CODES))
    for text, row in zip(NOTES, scores, strict=True):
        ids = predictor.tokenizer.encode(text, max_tokens=16).ids
        logits = embedding[ids].mean(axis=0) + bias  # the graph's masked mean, by hand
        np.testing.assert_allclose(row, 1.0 / (1.0 + np.exp(-logits)), rtol=1e-5, atol=1e-6)
        raw_logits = _raw_outputs(predictor, text)[0][0]
        np.testing.assert_allclose(row, 1.0 / (1.0 + np.exp(-raw_logits)), rtol=1e-6, atol=1e-7)


def test_sigmoid_is_stable_at_extremes() -> None:
    values = sigmoid(np.array([-1000.0, 0.0, 1000.0], dtype=np.float32))
    assert values.tolist() == [0.0, 0.5, 1.0]


def test_batching_by_length_keeps_order_and_values(predictor: OnnxPredictor) -> None:
    # batch_size 2 with notes of mixed length: sorted batches, answers back in input order.
    batched = predictor.scores(NOTES)
    alone = np.stack([predictor.scores([text])[0] for text in NOTES])
    np.testing.assert_allclose(batched, alone, rtol=1e-6, atol=1e-7)
    reordered = predictor.scores(NOTES[::-1])
    np.testing.assert_allclose(reordered, batched[::-1], rtol=1e-6, atol=1e-7)
    wide = OnnxPredictor(predictor.bundle.directory, threads=1, batch_size=16)
    np.testing.assert_allclose(wide.scores(NOTES), batched, rtol=1e-6, atol=1e-7)


def test_a_token_budget_bounds_each_graph_call(bundle_dir: Path) -> None:
    """Every graph call reads at most max_batch_tokens padded tokens (one note alone may be
    longer), and the answers are those of unbounded batching."""
    unbounded = OnnxPredictor(bundle_dir)
    bounded = OnnxPredictor(bundle_dir, max_batch_tokens=24)
    shapes: list[tuple[int, ...]] = []
    run = bounded._session.run

    def recording_run(fetch: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        shapes.append(feeds["input_ids"].shape)
        return run(fetch, feeds)

    bounded._session = type("Recorded", (), {"run": staticmethod(recording_run)})()
    notes = NOTES * 4  # 20 notes, up to 16 tokens each
    expected = unbounded.predict(notes, top_k=3)
    answered = bounded.predict(notes, top_k=3)
    assert [[c.code for c in ranked] for ranked in answered] == [
        [c.code for c in ranked] for ranked in expected
    ]
    np.testing.assert_allclose(
        [[c.score for c in ranked] for ranked in answered],
        [[c.score for c in ranked] for ranked in expected],
        rtol=1e-6,
        atol=1e-7,
    )
    assert len(shapes) > 2  # one unbounded call would have held 16 notes
    assert all(rows * width <= 24 or rows == 1 for rows, width in shapes)
    assert sum(rows for rows, _ in shapes) == len(notes)
    with pytest.raises(ValueError, match="max_batch_tokens must be positive"):
        OnnxPredictor(bundle_dir, max_batch_tokens=0)


def test_notes_are_truncated_to_max_tokens(predictor: OnnxPredictor) -> None:
    long_note = NOTES[2]
    assert len(predictor.tokenizer.encode(long_note)) > 16
    with_tail = long_note + " fever fever fever fever"
    np.testing.assert_array_equal(predictor.scores([long_note]), predictor.scores([with_tail]))
    read_until = int(predictor.tokenize([long_note])[0].offsets[-1, 1])
    for prediction in predictor.predict([with_tail])[0]:
        for highlight in prediction.highlights:
            assert highlight.end <= read_until


# -- predictions ------------------------------------------------------------------------------


def test_predictions_are_ranked_with_thresholds(predictor: OnnxPredictor) -> None:
    scores = predictor.scores(NOTES)
    predictions = predictor.predict(NOTES)
    assert len(predictions) == len(NOTES)
    for row, ranked in zip(scores, predictions, strict=True):
        assert [p.rank for p in ranked] == list(range(1, len(DEFAULT_CODES) + 1))
        assert sorted(p.code for p in ranked) == sorted(DEFAULT_CODES)
        values = [p.score for p in ranked]
        assert values == sorted(values, reverse=True)
        for prediction in ranked:
            index = list(predictor.codes).index(prediction.code)
            assert prediction.score == pytest.approx(float(row[index]), abs=1e-7)
            assert prediction.above_threshold == (row[index] >= predictor.thresholds[index])
            assert prediction.description.startswith(f"Test code {prediction.code}")
    # "fever and cough" ranks R50.9 and R05 first.
    assert {p.code for p in predictions[0][:2]} == {"R50.9", "R05"}
    assert [len(ranked) for ranked in predictor.predict(NOTES, top_k=2)] == [2] * len(NOTES)


def test_ties_rank_by_code_order(tmp_path: Path) -> None:
    # Codes without keywords all score exactly sigmoid(mean noise + bias); with zero noise
    # every code ties, so the ranking is the code order.
    codes = ["Z01", "Z02", "Z03", "Z04"]
    bundle_dir = build_tiny_bundle(tmp_path / "ties", codes=codes)
    model_path = bundle_dir / "model.onnx"
    model = onnx.load(str(model_path))
    for tensor in model.graph.initializer:
        if tensor.name == "E":
            tensor.CopyFrom(
                numpy_helper.from_array(np.zeros_like(numpy_helper.to_array(tensor)), "E")
            )
    staged = tmp_path / "zero.onnx"
    onnx.save(model, str(staged))
    metadata = load_bundle(bundle_dir).metadata
    write_bundle(bundle_dir, metadata, staged, bundle_dir / "tokenizer.json")
    ranked = OnnxPredictor(bundle_dir).predict(["fever"])[0]
    assert [p.code for p in ranked] == codes


def test_highlights_point_at_the_evidence(predictor: OnnxPredictor) -> None:
    text = NOTES[0]
    ranked = predictor.predict([text])[0]
    top_codes = _raw_outputs(predictor, text)[1][0].tolist()
    exported = {predictor.codes[index] for index in top_codes}
    for prediction in ranked:
        assert bool(prediction.highlights) == (prediction.code in exported)
        for highlight in prediction.highlights:
            assert 0 <= highlight.start < highlight.end <= len(text)
            assert text[highlight.start : highlight.end] == highlight.text
        weights = [h.weight for h in prediction.highlights]
        assert weights == sorted(weights, reverse=True)
    by_code = {p.code: p for p in ranked}
    assert by_code["R50.9"].highlights[0].text == "fever"
    assert by_code["R05"].highlights[0].text == "cough"


def test_highlights_cover_the_heaviest_token(predictor: OnnxPredictor) -> None:
    text = NOTES[2]
    note = predictor.tokenize([text])[0]
    _, top_codes, top_attention = _raw_outputs(predictor, text)
    ranked = {p.code: p for p in predictor.predict([text])[0]}
    for k, code_index in enumerate(top_codes[0].tolist()):
        heaviest = int(np.argmax(top_attention[0, k, : len(note)]))
        start, end = note.offsets[heaviest].tolist()
        spans = ranked[predictor.codes[code_index]].highlights
        assert any(h.start <= start and end <= h.end for h in spans)


def test_concurrent_predictions_match_serial(predictor: OnnxPredictor) -> None:
    expected = predictor.predict(NOTES, top_k=3)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda _: predictor.predict(NOTES, top_k=3), range(12)))
    assert all(result == expected for result in results)


# -- validation and readiness ------------------------------------------------------------------


def test_bad_input_is_rejected_clearly(predictor: OnnxPredictor) -> None:
    with pytest.raises(ValueError, match="note 1 is empty"):
        predictor.predict(["fever", "  \n\t"])
    with pytest.raises(ValueError, match="note 0 is empty"):
        predictor.scores([""])
    with pytest.raises(TypeError, match="wrap it in a list"):
        predictor.predict("fever")
    with pytest.raises(ValueError, match="top_k"):
        predictor.predict(["fever"], top_k=0)
    assert predictor.predict([]) == []
    assert predictor.scores([]).shape == (0, len(DEFAULT_CODES))


def test_warm_up_turns_ready(bundle_dir: Path) -> None:
    fresh = OnnxPredictor(bundle_dir, threads=1)
    assert not fresh.is_ready()
    fresh.warm_up()
    assert fresh.is_ready()


def test_broken_bundles_fail_at_load(tmp_path: Path, bundle_dir: Path) -> None:
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("model.onnx", "tokenizer.json", "bundle.json"):
        (copy / name).write_bytes((bundle_dir / name).read_bytes())
    (copy / "model.onnx").write_bytes(b"garbage")
    with pytest.raises(BundleError, match="checksum"):
        OnnxPredictor(copy)
    # A graph scoring 4 codes under metadata listing 6: caught before serving anything.
    other = build_tiny_bundle(tmp_path / "four", codes=["R50.9", "R05", "I10", "E11.9"])
    mismatched = tmp_path / "mismatched"
    write_bundle(
        mismatched, load_bundle(bundle_dir).metadata, other / "model.onnx", other / "tokenizer.json"
    )
    with pytest.raises(BundleError, match=r"scores 4 codes but bundle\.json says it scores 6"):
        OnnxPredictor(mismatched)
    # Garbage that matches its own checksum: ONNX Runtime refuses it, with advice.
    raw = json.loads((copy / "bundle.json").read_text(encoding="utf-8"))
    write_bundle(
        tmp_path / "garbage",
        BundleMetadata.from_dict(raw),
        copy / "model.onnx",
        copy / "tokenizer.json",
    )
    with pytest.raises(BundleError, match="cannot load"):
        OnnxPredictor(tmp_path / "garbage")


# -- no torch ----------------------------------------------------------------------------------

_BLOCK_TORCH = textwrap.dedent(
    """
    import sys

    class _NoTorch:
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError("torch is hidden for this test")
            return None

    sys.meta_path.insert(0, _NoTorch())
    """
)


def test_runtime_modules_import_without_torch(tmp_path: Path) -> None:
    (tmp_path / "sitecustomize.py").write_text(_BLOCK_TORCH, encoding="utf-8")
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(REPO)])}
    script = (
        "import sys\n"
        "try:\n    import torch\nexcept ImportError:\n    pass\n"
        "else:\n    sys.exit('torch was not hidden')\n"
        "import model.runtime, model.bundle, model.tokenizer, model.highlights\n"
        "assert 'torch' not in sys.modules, 'torch was imported'\n"
        "print('ok')\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        env=environment,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr + result.stdout
    assert result.stdout.strip() == "ok"


def test_a_graph_call_decodes_a_bounded_number_of_codes_x_tokens(
    bundle_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The token cap per call follows the codes decoded (DECODER_CELLS_PER_CALL), so a wide label
    space gets small calls; the answers stay those of one call per note."""
    import model.runtime as runtime

    predictor = OnnxPredictor(bundle_dir, batch_size=16)
    n_codes = len(predictor.codes)
    monkeypatch.setattr(runtime, "DECODER_CELLS_PER_CALL", 24 * n_codes)
    shapes: list[tuple[int, ...]] = []
    run = predictor._session.run

    def recording_run(fetch: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        shapes.append(feeds["input_ids"].shape)
        return run(fetch, feeds)

    predictor._session = type("Recorded", (), {"run": staticmethod(recording_run)})()
    notes = NOTES * 4
    batched = predictor.scores(notes)
    assert len(shapes) > 2 and all(rows * width <= 24 or rows == 1 for rows, width in shapes)
    alone = np.stack([predictor.scores([text])[0] for text in notes])
    np.testing.assert_allclose(batched, alone, rtol=1e-6, atol=1e-7)
