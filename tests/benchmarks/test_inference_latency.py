"""Smoke tests for benchmarks/inference_latency.py: a minimal run on a tiny real PLANT bundle
gives the report's shape (every system at every batch size, the length sweep and its fits);
timings are not checked, only that they are numbers."""

from __future__ import annotations

from pathlib import Path

from tests.benchmarks.conftest import N_NOTES, run_script, table_rows

SCRIPT = "inference_latency.py"


def test_minimal_run_reports_every_system_batch_and_length(
    plant_bundle: tuple[Path, Path], notes_corpus: Path, tmp_path: Path
) -> None:
    bundle_dir, state_path = plant_bundle
    out = tmp_path / "latency.md"
    args = [
        *("--bundle", str(bundle_dir), "--torch-state", str(state_path)),
        *("--corpus", "jsonl", "--corpus-path", str(notes_corpus)),
        *("--repeats", "1", "--warmup", "1", "--batch-sizes", "1,4"),
        *("--transformer-layers", "1", "--transformer-hidden", "32", "--transformer-notes", "2"),
        *("--lengths", "20,40,80", "--length-repeats", "1", "--out", str(out)),
    ]
    done = run_script(SCRIPT, *args)
    assert done.returncode == 0, done.stderr
    report = done.stdout
    assert out.read_text(encoding="utf-8").strip() in report
    assert report.startswith("## Inference latency")
    command = next(line for line in report.splitlines() if line.startswith("$ "))
    assert SCRIPT in command and "--torch-state" in command
    assert "trained state dict" in report
    # The PyTorch network rebuilt from bundle.json with the state dict is the exported graph.
    difference = next(line for line in report.splitlines() if "max |logit| difference" in line)
    assert float(difference.rsplit(":", 1)[1]) < 1e-4

    rows = table_rows(report, "system")
    assert [(row[0].split(",")[0].split(" (")[0], row[1]) for row in rows] == [
        (name, batch)
        for batch in ("1", "4")
        for name in ("ONNX Runtime", "ONNX Runtime", "PyTorch", "PLM-ICD-size transformer")
    ]
    # Notes timed: all of them (8 = two full batches of 4), the transformer only its first 2
    # (at batch 4: one whole batch).
    assert [row[2] for row in rows] == [str(N_NOTES)] * 3 + ["2"] + [str(N_NOTES)] * 3 + ["4"]
    for row in rows:
        for cell in row[3:7]:
            assert float(cell) >= 0.0
        assert row[7].endswith("x")
    assert [row[7] for row in rows if row[0].startswith("ONNX Runtime, raw")] == ["1.00x"] * 2
    assert "Target p50 <= 20 ms per note at batch 1" in report

    lengths = table_rows(report, "tokens")
    assert [row[0] for row in lengths] == ["20", "40", "80"]
    assert all(len(row) == 4 and row[3].endswith("x") for row in lengths)
    fits = [line for line in report.splitlines() if "ms per 1k tokens" in line]
    assert len(fits) == 2 and all("R^2 = " in line for line in fits)


def test_without_state_dict_says_weights_are_random(
    plant_bundle: tuple[Path, Path], notes_corpus: Path
) -> None:
    bundle_dir, _ = plant_bundle
    done = run_script(
        SCRIPT,
        *("--bundle", str(bundle_dir), "--corpus", "jsonl", "--corpus-path", str(notes_corpus)),
        *("--systems", "session,torch", "--repeats", "1", "--batch-sizes", "1", "--lengths", ""),
    )
    assert done.returncode == 0, done.stderr
    assert "random weights of the bundle's config" in done.stdout
    assert [row[0].split(",")[0] for row in table_rows(done.stdout, "system")] == [
        "ONNX Runtime",
        "PyTorch",
    ]
    assert "### Latency against note length" not in done.stdout


def test_a_bundle_torch_cannot_rebuild_is_refused_with_the_way_out(
    tiny_bundle: Path, notes_corpus: Path
) -> None:
    done = run_script(
        SCRIPT,
        *("--bundle", str(tiny_bundle), "--corpus", "jsonl", "--corpus-path", str(notes_corpus)),
        *("--systems", "session,torch", "--repeats", "1"),
    )
    assert done.returncode != 0
    assert "does not rebuild a PlantClassifier" in done.stderr
    assert "--systems" in done.stderr
