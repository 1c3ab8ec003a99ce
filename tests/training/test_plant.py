"""PLANT end to end on a synthetic corpus: every stage runs, stages are cached, the bundle serves.

The `tiny` preset trains in seconds; the planted model must beat LANT (same network, same steps,
no planting) on dev MAP, which is the paper's claim in miniature.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from model.bundle import load_bundle
from model.runtime import OnnxPredictor
from training.cli import app
from training.datasets import CorpusSpec
from training.plant import TrainOptions, run_training
from training.stage_cache import StageCache

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, synthetic_codiesp: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("plant")
    spec = CorpusSpec("codiesp", str(synthetic_codiesp), lang="en", codes="D")
    bundles = {}
    # The fused PLANT bundle, then the same network alone (its stages come from the cache),
    # then LANT alone: the network comparison is network against network.
    for name, plant, fusion in (
        ("plant", True, True),
        ("plant-net", True, False),
        ("lant", False, False),
    ):
        run_training(
            TrainOptions(
                spec=spec,
                out=root / name,
                preset="tiny",
                plant=plant,
                fusion=fusion,
                work_dir=root / "work",
            )
        )
        bundles[name] = root / name
    bundles["work"] = root / "work"
    return bundles


def test_bundle_is_complete_and_loads(trained: dict[str, Path]) -> None:
    bundle = load_bundle(trained["plant"])
    metadata = json.loads((trained["plant"] / "bundle.json").read_text())
    n_codes = len(metadata["codes"])
    assert n_codes == 6
    assert len(metadata["thresholds"]["per_code"]) == n_codes
    assert len(metadata["train_code_counts"]) == n_codes
    assert metadata["kind"] == "plant"
    assert metadata["corpus"]["fingerprint"]
    assert metadata["dev_metrics"]["map"] > 0
    assert set(metadata["training"]["seconds"]) >= {"tokenizer", "lm", "mi", "l2r", "export"}
    assert metadata["training"]["l2r"]["heldout_ndcg"] > metadata["training"]["l2r"]["random_ndcg"]
    assert metadata["config"]["branches"] == ["laat", "planted", "static"]
    assert metadata["training"]["attention_weight"] == 0.5  # the tiny preset's
    # The tiny preset decodes a shortlist of 3 of the 6 codes, with a first stage trained for it.
    assert metadata["config"]["first_stage"] is True and metadata["shortlist"]["size"] == 3
    assert metadata["precision"] == "fp32"
    assert bundle.graph_path.is_file()
    assert all(entry["description"] for entry in metadata["codes"])


def test_planted_model_beats_lant_on_dev(trained: dict[str, Path]) -> None:
    plant = json.loads((trained["plant-net"] / "bundle.json").read_text())["dev_metrics"]
    lant = json.loads((trained["lant"] / "bundle.json").read_text())["dev_metrics"]
    lant_config = json.loads((trained["lant"] / "bundle.json").read_text())["config"]
    assert "static" not in lant_config["branches"]
    assert plant["map"] > lant["map"] + 0.1
    assert plant["map"] > 0.8  # tell-tale words: a working model ranks them nearly perfectly


def test_the_fused_bundle_ranks_at_least_as_well_as_its_network(trained: dict[str, Path]) -> None:
    fused = json.loads((trained["plant"] / "bundle.json").read_text())
    network = json.loads((trained["plant-net"] / "bundle.json").read_text())
    assert fused["fusion"]["uses_network"] is False
    assert set(fused["fusion"]["files"]) == {"lexicon.json", "neighbours.npz", "combiner.onnx"}
    assert fused["fusion"]["report"]["candidate_recall"] > 0.9
    assert network.get("fusion") is None
    assert fused["dev_metrics"]["map"] >= network["dev_metrics"]["map"] - 0.01
    assert fused["training"]["l2r"]["planting"] != "mi"  # the synthetic corpus has spans


def test_fused_evidence_names_its_source(trained: dict[str, Path]) -> None:
    predictor = OnnxPredictor(trained["plant"])
    note = "Patient admitted to the ward. Pneumonia. Follow up was arranged."
    top = predictor.predict([note], top_k=1)[0][0]
    assert top.code == "J18.9"
    assert top.highlights[0].source == "lexicon"
    assert note[top.highlights[0].start : top.highlights[0].end] == "Pneumonia"


def test_runtime_predicts_with_highlights_on_the_evidence(trained: dict[str, Path]) -> None:
    predictor = OnnxPredictor(trained["plant"])
    note = "Patient admitted to the ward. Pneumonia with crackles. Follow up was arranged."
    ranked = predictor.predict([note], top_k=3)[0]
    assert ranked[0].code == "J18.9"
    spans = [note[h.start : h.end].lower() for h in ranked[0].highlights]
    assert any("pneumonia" in span or "crackles" in span for span in spans), spans


def test_rerun_reuses_cached_stages(trained: dict[str, Path], synthetic_codiesp: Path) -> None:
    cached = {path.name: path.stat().st_mtime_ns for path in trained["work"].iterdir()}
    spec = CorpusSpec("codiesp", str(synthetic_codiesp), lang="en", codes="D")
    result = run_training(
        TrainOptions(
            spec=spec,
            out=trained["work"].parent / "again",
            preset="tiny",
            work_dir=trained["work"],
        )
    )
    after = {path.name: path.stat().st_mtime_ns for path in trained["work"].iterdir()}
    assert after == cached  # no stage file rewritten
    first = json.loads((trained["plant"] / "bundle.json").read_text())["dev_metrics"]["map"]
    assert result.dev_report.as_dict()["map"] == pytest.approx(first, abs=1e-6)


def test_stage_cache_names_files_by_key(tmp_path: Path) -> None:
    cache = StageCache(tmp_path)
    assert cache.report("lm", "abc") is None
    cache.save_report("lm", "abc", {"loss": np.float32(1.5)})
    assert cache.report("lm", "abc") == {"loss": 1.5}


def test_predict_command_prints_codes_and_evidence(
    trained: dict[str, Path], tmp_path: Path
) -> None:
    note = tmp_path / "note.txt"
    note.write_text("Fever and febrile episodes. Dysuria reported.", encoding="utf-8")
    result = runner.invoke(app, ["predict", "--bundle", str(trained["plant"]), str(note)])
    assert result.exit_code == 0, result.output
    assert "R50.9" in result.output or "N39.0" in result.output
    assert "evidence for" in result.output


def test_final_refits_on_train_and_dev_with_the_dev_selected_epochs(
    trained: dict[str, Path], synthetic_codiesp: Path, tmp_path: Path
) -> None:
    from training.final import read_final_reference

    spec = CorpusSpec("codiesp", str(synthetic_codiesp), lang="en", codes="D")
    reference = json.loads((trained["plant-net"] / "bundle.json").read_text())
    result = run_training(
        TrainOptions(
            spec=spec,
            out=tmp_path / "final",
            preset="tiny",
            fusion=False,
            final_from=trained["plant-net"],
            work_dir=tmp_path / "work",
        )
    )
    assert result is not None and result.dev_report is None
    metadata = json.loads((tmp_path / "final" / "bundle.json").read_text())
    final = metadata["training"]["final"]
    selected = {stage["name"]: stage["best_epoch"] for stage in reference["training"]["classifier"]}
    assert final["epochs"] == selected
    assert final["documents"] == len(spec.load("train")) + len(spec.load("dev"))
    assert [s["epochs_run"] for s in metadata["training"]["classifier"]] == list(selected.values())
    assert metadata["corpus"]["split"] == "train+dev" and metadata["dev_metrics"] == {}
    carried = dict(
        zip(
            [c["code"] for c in reference["codes"]],
            reference["thresholds"]["per_code"],
            strict=True,
        )
    )
    for entry, value in zip(metadata["codes"], metadata["thresholds"]["per_code"], strict=True):
        assert value == carried.get(entry["code"], reference["thresholds"]["global_threshold"])
    with pytest.raises(ValueError, match="train-only"):
        read_final_reference(tmp_path / "final")
