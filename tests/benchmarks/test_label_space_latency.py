"""Smoke test for benchmarks/label_space_latency.py: tiny synthetic bundles of two label-space
sizes built through the real export, two note lengths, a one-layer transformer, the batch table
and the service check; the report's shape, not its numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.benchmarks.conftest import run_script, table_rows
from tests.model.bundle_factory import DEFAULT_CODES, synthetic_notes
from training.corpora import Document, write_jsonl


@pytest.fixture(scope="module")
def coded_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """train.jsonl and dev.jsonl: short synthetic notes, each with one code."""
    folder = tmp_path_factory.mktemp("coded")
    codes = list(DEFAULT_CODES)
    for split, seed in (("train", 0), ("dev", 1)):
        texts = synthetic_notes(list(DEFAULT_CODES.values()), n_notes=40, seed=seed)
        write_jsonl(
            (
                Document(id=f"{split}{i}", text=text, codes=(codes[i % len(codes)],))
                for i, text in enumerate(texts)
            ),
            folder / f"{split}.jsonl",
        )
    return folder


def test_tables_for_every_size_length_and_batch(coded_corpus: Path, tmp_path: Path) -> None:
    out = tmp_path / "label-space.md"
    done = run_script(
        "label_space_latency.py",
        *("--sizes", "6,40", "--lengths", "20,60", "--rounds", "1", "--repeats", "2"),
        *("--network", "tiny"),
        *("--vocab", "300", "--cache", str(tmp_path / "cache"), "--corpus", "jsonl"),
        *("--corpus-path", str(coded_corpus), "--batch-notes", "32"),
        *("--transformer-layers", "1", "--transformer-hidden", "32", "--out", str(out)),
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    report = done.stdout
    assert out.read_text(encoding="utf-8").strip() in report
    assert "median of 1 rounds x 2 calls in a row" in report
    lengths = table_rows(report, "served path (ms per note)")
    assert [row[0].split(",")[0] for row in lengths] == ["6 codes", "40 codes"]
    assert all(float(cell) > 0 for row in lengths for cell in row[1:])
    transformer = table_rows(report, "PLM-ICD-size transformer")
    assert transformer[0][0] == "transformer ms" and transformer[1][1].endswith("x")
    batch = table_rows(report, "way")
    assert [row[0].split(": ")[1] for row in batch] == [
        "batch 1",
        "batch 16, one call (before)",
        "batch 16 (served)",
    ]
    assert batch[0][2] == "1.00x"
    assert "Service with 40 codes: ready" in report and "answered 201 with 10 codes" in report


def test_int8_copies_are_served_beside_each_shortlist(coded_corpus: Path, tmp_path: Path) -> None:
    done = run_script(
        "label_space_latency.py",
        *(
            "--sizes",
            "6",
            "--lengths",
            "20",
            "--rounds",
            "1",
            "--repeats",
            "1",
            "--network",
            "tiny",
        ),
        *("--vocab", "300", "--cache", str(tmp_path / "cache"), "--corpus", "jsonl"),
        *("--corpus-path", str(coded_corpus), "--batch-notes", "16", "--shortlist", "3"),
        *("--int8", "--no-transformer", "--no-serve-check"),
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    lengths = table_rows(done.stdout, "served path (ms per note)")
    assert [row[0] for row in lengths] == [
        "6 codes, full decoding",
        "6 codes, S = 3",
        "6 codes, S = 3, int8",
    ]
    assert all(float(cell) > 0 for row in lengths for cell in row[1:])
    assert any((tmp_path / "cache").rglob("bundle-int8/bundle.json"))
