"""The `plant-icd` command: corpus statistics, baseline train + evaluate, clear failures."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from training.cli import app

runner = CliRunner()


def test_data_stats_on_synthetic_corpus(synthetic_codiesp: Path) -> None:
    result = runner.invoke(
        app, ["data", "stats", "--path", str(synthetic_codiesp), "--split", "dev"]
    )
    assert result.exit_code == 0, result.output
    assert "documents" in result.output
    assert "| documents | 30 |" in result.output


@pytest.mark.corpus
@pytest.mark.parametrize(("split", "documents"), [("train", 500), ("dev", 250)])
def test_data_stats_reports_codiesp_sizes(real_codiesp: Path, split: str, documents: int) -> None:
    result = runner.invoke(
        app, ["data", "stats", "--corpus", "codiesp", "--path", str(real_codiesp), "--split", split]
    )
    assert result.exit_code == 0, result.output
    # Not a terminal, so the table is Markdown.
    row = next(line for line in result.output.splitlines() if line.startswith("| documents |"))
    assert row.split("|")[2].strip() == str(documents)


def test_missing_corpus_fails_with_a_clear_message(tmp_path: Path) -> None:
    result = runner.invoke(app, ["data", "stats", "--path", str(tmp_path / "nowhere")])
    assert result.exit_code == 1
    assert "error" in result.output
    assert "nowhere" in result.output


def test_bad_option_value_is_rejected(synthetic_codiesp: Path) -> None:
    result = runner.invoke(app, ["data", "stats", "--path", str(synthetic_codiesp), "--codes", "X"])
    assert result.exit_code == 1
    assert "--codes must be D, P or DP" in result.output


def test_baseline_train_then_evaluate(synthetic_codiesp: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "baseline"
    trained = runner.invoke(
        app,
        ["baseline", "train", "--path", str(synthetic_codiesp), "--out", str(model_dir)],
    )
    assert trained.exit_code == 0, trained.output
    metadata = json.loads((model_dir / "bundle.json").read_text())
    assert metadata["kind"] == "tfidf-logreg"
    assert len(metadata["thresholds"]["per_code"]) == len(metadata["codes"])
    assert metadata["dev_metrics"]["map"] > 0.8  # tell-tale words make this corpus easy

    out_dir = tmp_path / "eval"
    evaluated = runner.invoke(
        app, ["evaluate", "--model", str(model_dir), "--split", "dev", "--out", str(out_dir)]
    )
    assert evaluated.exit_code == 0, evaluated.output
    assert "map" in evaluated.output and "by training frequency" in evaluated.output
    tsv_rows = (out_dir / "predictions.tsv").read_text().splitlines()
    case, code = tsv_rows[0].split("\t")
    assert case.startswith("SDE") and code == code.lower()
    metrics = json.loads((out_dir / "metrics.json").read_text())
    assert metrics["map"] == pytest.approx(metadata["dev_metrics"]["map"])


def test_evaluate_without_model_dir_says_what_to_do(tmp_path: Path) -> None:
    result = runner.invoke(app, ["evaluate", "--model", str(tmp_path)])
    assert result.exit_code == 1
    assert "bundle.json" in result.output


def write_spanish_split(root: Path) -> None:
    """A two-note Spanish CodiEsp dev split with X evidence, for the tiny keyword bundle."""
    notes = {"S1": "Fiebre.", "S2": "Tos."}
    references = [
        ("S1", "DIAGNOSTICO", "r50.9", "Fiebre", "0 6"),
        ("S2", "DIAGNOSTICO", "r05", "Tos", "0 3"),
        ("S2", "DIAGNOSTICO", "j18.9", "Tos", "0 3"),  # a gold code the model will miss
    ]
    (root / "dev" / "text_files").mkdir(parents=True)
    for note_id, text in notes.items():
        (root / "dev" / "text_files" / f"{note_id}.txt").write_text(text, encoding="utf-8")
    (root / "dev" / "devD.tsv").write_text(
        "".join(f"{row[0]}\t{row[2]}\n" for row in references), encoding="utf-8"
    )
    (root / "dev" / "devX.tsv").write_text(
        "".join("\t".join(row) + "\n" for row in references), encoding="utf-8"
    )


def test_evaluate_evidence_writes_x_tsv_and_scores_it(tmp_path: Path) -> None:
    from tests.model.bundle_factory import build_tiny_bundle

    bundle = build_tiny_bundle(tmp_path / "bundle")
    corpus = tmp_path / "codiesp"
    write_spanish_split(corpus)
    out_dir = tmp_path / "eval"
    options = ["--corpus", "codiesp", "--path", str(corpus), "--lang", "es", "--codes", "D"]

    result = runner.invoke(
        app,
        ["evaluate", "--model", str(bundle), *options, "--out", str(out_dir), "--evidence"],
    )

    assert result.exit_code == 0, result.output
    assert "CodiEsp-X evidence" in result.output
    assert (out_dir / "predictions_x.tsv").read_text(encoding="utf-8").splitlines() == [
        "S1\t0 6\tDIAGNOSTICO\tr50.9",
        "S2\t0 3\tDIAGNOSTICO\tr05",
    ]
    report = json.loads((out_dir / "evidence.json").read_text(encoding="utf-8"))
    assert report["D"] == {
        "precision": 1.0,
        "recall": pytest.approx(2 / 3),
        "f1": pytest.approx(0.8),
        "predicted": 2,
        "gold": 3,
        "found": 2,
        "correct_codes": 2,
        "hit_at_1_rule": 1.0,
        "hit_at_1_overlap": 1.0,
    }
    assert report["P"]["gold"] == 0 and report["DP"]["found"] == 2


def test_evaluate_evidence_needs_the_spanish_text(tmp_path: Path) -> None:
    from tests.model.bundle_factory import build_tiny_bundle

    bundle = build_tiny_bundle(tmp_path / "bundle")
    corpus = tmp_path / "codiesp"
    write_spanish_split(corpus)
    options = ["--corpus", "codiesp", "--path", str(corpus), "--lang", "en", "--codes", "D"]
    result = runner.invoke(app, ["evaluate", "--model", str(bundle), *options, "--evidence"])
    assert result.exit_code == 1
    assert "--lang es" in " ".join(result.output.split())
