"""`plant-icd quantize`: the dynamic-int8 bundle loads, says it is int8 (runtime and bundle.json),
scores close to fp32, and is only kept where its dev MAP stays within the allowed drop."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from model.bundle import BundleError, load_bundle
from model.runtime import OnnxPredictor
from tests.model.bundle_factory import add_fusion
from tests.model.shortlist_bundle import SHORTLIST_CODES, build_shortlist_bundle
from tests.training.test_shortlist_report import dev_documents
from training.cli_quantize import app
from training.quantize import MapDropError, quantize_bundle

NOTES = [
    "Patient admitted with high fever and cough.",
    "Paciente con hipertensión y dolor torácico.",
    "Neumonía con fiebre y tos.",
]


@pytest.fixture(scope="module")
def fp32_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bundle_dir, _ = build_shortlist_bundle(tmp_path_factory.mktemp("fp32") / "bundle", size=4)
    return add_fusion(bundle_dir)


def test_int8_bundle_loads_is_marked_int8_and_scores_close_to_fp32(
    fp32_bundle: Path, tmp_path: Path
) -> None:
    result = quantize_bundle(fp32_bundle, tmp_path / "int8")
    assert result.map_drop is None and result.int8_bytes > 0
    bundle = load_bundle(tmp_path / "int8")  # the new graph's hash checks out
    metadata = bundle.metadata
    assert metadata.precision == "int8" and metadata.format_version == 3
    assert metadata.training["quantization"]["from_graph_sha256"] == (
        load_bundle(fp32_bundle).metadata.graph_sha256
    )
    assert metadata.graph_sha256 != load_bundle(fp32_bundle).metadata.graph_sha256
    assert metadata.dev_metrics == {}  # fp32 figures are not carried over as int8's
    assert metadata.fusion is not None and set(metadata.fusion["files"]) == {
        "lexicon.json",
        "neighbours.npz",
        "combiner.onnx",
    }
    fp32, int8 = OnnxPredictor(fp32_bundle), OnnxPredictor(tmp_path / "int8")
    assert (fp32.precision, int8.precision) == ("fp32", "int8")
    assert int8.shortlist_size == 4 and list(int8.codes) == list(fp32.codes)
    np.testing.assert_allclose(int8.scores(NOTES), fp32.scores(NOTES), atol=0.05)
    network_only = OnnxPredictor(
        tmp_path / "int8", fused=False, shortlist_size=len(SHORTLIST_CODES)
    )
    reference = OnnxPredictor(fp32_bundle, fused=False, shortlist_size=len(SHORTLIST_CODES))
    np.testing.assert_allclose(network_only.scores(NOTES), reference.scores(NOTES), atol=0.05)
    with pytest.raises(BundleError, match="already int8"):
        quantize_bundle(tmp_path / "int8", tmp_path / "again")


def test_dev_map_of_both_precisions_is_recorded_and_a_large_drop_refused(
    fp32_bundle: Path, tmp_path: Path
) -> None:
    result = quantize_bundle(fp32_bundle, tmp_path / "int8", dev_documents(), max_map_drop=1.0)
    assert result.dev_map_fp32 is not None and result.dev_map_int8 is not None
    metadata = load_bundle(tmp_path / "int8").metadata
    record = metadata.training["quantization"]
    assert (record["dev_map_fp32"], record["dev_map_int8"]) == (
        result.dev_map_fp32,
        result.dev_map_int8,
    )
    assert metadata.dev_metrics["map"] == result.dev_map_int8
    # A drop above what is allowed (here any: -1) keeps no int8 bundle.
    with pytest.raises(MapDropError, match="serve the fp32 bundle"):
        quantize_bundle(fp32_bundle, tmp_path / "refused", dev_documents(), max_map_drop=-1.0)
    assert not (tmp_path / "refused").exists()
    with pytest.raises(BundleError, match="not empty"):
        quantize_bundle(fp32_bundle, tmp_path / "int8")


def test_command_writes_the_bundle_and_says_what_to_pass_without_a_corpus(
    fp32_bundle: Path, tmp_path: Path
) -> None:
    runner = CliRunner()
    done = runner.invoke(
        app, [str(fp32_bundle), str(tmp_path / "int8"), "--no-evaluate", "--format", "json"]
    )
    assert done.exit_code == 0, done.output
    assert json.loads((tmp_path / "int8" / "bundle.json").read_text())["precision"] == "int8"
    # The factory bundle records no corpus location: evaluating needs --path.
    done = runner.invoke(app, [str(fp32_bundle), str(tmp_path / "other")])
    assert done.exit_code == 1 and "--no-evaluate" in done.output
    assert not (tmp_path / "other").exists()
