"""Smoke tests for the benchmarks that read a fused bundle, on a tiny fused bundle with a first
stage and a tiny CodiEsp-shaped corpus: the fused latency script serves every path at full
decoding and at each S, the shortlist quality script reports one row per S, and the evidence
sources script scores each source with the context rules on and off, and the fusion ablation
scores its variants' evidence. Timings, MAP and X values are not checked, only the report's shape
and that rates are numbers in range."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model.lexicon_evidence import EVIDENCE_PRIORITY
from tests.benchmarks.conftest import run_script, table_rows
from tests.model.bundle_factory import add_fusion
from tests.model.shortlist_bundle import build_shortlist_bundle
from tests.training.synthetic import write_synthetic_codiesp


@pytest.fixture(scope="module")
def fused_shortlist_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bundle_dir, _ = build_shortlist_bundle(tmp_path_factory.mktemp("fused-shortlist"), size=3)
    return add_fusion(bundle_dir)


@pytest.fixture(scope="module")
def codiesp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_synthetic_codiesp(tmp_path_factory.mktemp("codiesp"), n_train=4, n_dev=6)


def test_fusion_latency_serves_each_path_at_full_decoding_and_each_s(
    fused_shortlist_bundle: Path, codiesp: Path
) -> None:
    args = ["--model", str(fused_shortlist_bundle), "--path", str(codiesp), "--limit", "3"]
    done = run_script("fusion_latency.py", *args, "--shortlist", "2,4")
    assert done.returncode == 0, done.stderr
    rows = table_rows(done.stdout, "served path")
    assert [row[0] for row in rows] == [
        f"{path}, {label}"
        for label in ("full decoding", "S = 2", "S = 4")
        for path in ("network alone", "fused")
    ]
    assert rows[0][-1] == "1.00x"  # the base: the network alone at full decoding
    assert all(row[1] == "3" and float(row[2]) > 0 for row in rows)


def test_fusion_latency_times_the_transformer_on_the_same_notes(
    fused_shortlist_bundle: Path, codiesp: Path
) -> None:
    args = ["--model", str(fused_shortlist_bundle), "--path", str(codiesp), "--limit", "2"]
    small = ["--transformer-layers", "1", "--transformer-hidden", "64", "--rounds", "1"]
    done = run_script("fusion_latency.py", *args, "--transformer", *small)
    assert done.returncode == 0, done.stderr
    rows = table_rows(done.stdout, "served path")
    assert [row[0] for row in rows] == ["network alone", "fused", "PLM-ICD-size transformer"]
    for row in rows[:2]:  # "<ratio of p50s>x / <median per-note ratio>x", both positive
        assert all(float(part.rstrip("x")) > 0 for part in row[-1].split(" / "))
    assert rows[2][-1] == ""  # no ratio of the transformer against itself
    assert "1 layers, 64 hidden" in done.stdout


def test_fusion_latency_times_requests_of_several_notes(
    fused_shortlist_bundle: Path, codiesp: Path
) -> None:
    args = ["--model", str(fused_shortlist_bundle), "--path", str(codiesp), "--limit", "5"]
    done = run_script("fusion_latency.py", *args, "--batch", "2", "--rounds", "1")
    assert done.returncode == 0, done.stderr
    assert [row[0] for row in table_rows(done.stdout, "served path")] == ["network alone", "fused"]
    rows = table_rows(done.stdout, "served path", which=1)
    assert [row[:2] for row in rows] == [["network alone", "4"], ["fused", "4"]]  # 2 requests
    for row in rows:
        single, batched, ratio = float(row[2]), float(row[3]), float(row[4].rstrip("x"))
        assert (
            single > 0 and batched > 0 and ratio == pytest.approx(batched / single, rel=0.05)
        )  # shown rounded
        assert float(row[5].rstrip("x")) > 0  # the paired per-request ratio


def test_fusion_latency_also_serves_the_proposals_before_the_graph(
    fused_shortlist_bundle: Path, codiesp: Path
) -> None:
    args = ["--model", str(fused_shortlist_bundle), "--path", str(codiesp), "--limit", "3"]
    done = run_script("fusion_latency.py", *args, "--proposals-first", "--rounds", "1")
    assert done.returncode == 0, done.stderr
    rows = table_rows(done.stdout, "served path")
    assert [row[0] for row in rows] == [
        "network alone",
        "fused",
        "fused, proposals before the graph",
    ]
    assert all(float(row[2]) > 0 for row in rows)


def test_shortlist_quality_reports_one_row_per_s(
    fused_shortlist_bundle: Path, codiesp: Path
) -> None:
    args = ["--model", str(fused_shortlist_bundle), "--path", str(codiesp), "--sizes", "2,9"]
    done = run_script("shortlist_quality.py", *args, "--threads", "1")
    assert done.returncode == 0, done.stderr
    rows = table_rows(done.stdout, "S")
    assert [row[0] for row in rows] == ["2", "9"]
    for row in rows:
        assert 0.0 <= float(row[1]) <= float(row[2]) <= 1.0  # first stage within decoded
        assert 0.0 <= float(row[4]) <= 1.0
    assert float(rows[1][6]) == pytest.approx(0.0, abs=1e-9)  # S covers every code: no drop


def test_evidence_sources_scores_each_source_with_and_without_context(
    fused_shortlist_bundle: Path, codiesp: Path
) -> None:
    args = ["--model", str(fused_shortlist_bundle), "--path", str(codiesp), "--threads", "1"]
    done = run_script("evidence_sources.py", *args, "--codes", "D")
    assert done.returncode == 0, done.stderr
    rows = table_rows(done.stdout, "evidence")
    assert {(row[0], row[1]) for row in rows} == {
        (source, context)
        for source in ("merged (as served)", "lexicon only", "attention only")
        for context in ("on", "off")
    }
    assert all(0.0 <= float(value) <= 1.0 for row in rows for value in row[3:])
    firsts = table_rows(done.stdout, "first item")
    assert {row[0] for row in firsts} <= {*EVIDENCE_PRIORITY, "attention"}
    assert all(int(row[1]) > 0 and 0.0 <= float(row[2]) <= float(row[3]) <= 1.0 for row in firsts)


def test_fusion_ablation_scores_each_variants_evidence(tmp_path: Path) -> None:
    codiesp = write_synthetic_codiesp(tmp_path / "codiesp", n_train=20, n_dev=6)
    variants = "without catalogue,without split mentions"
    args = ["--path", str(codiesp), "--codes", "D", "--variants", variants, "--evidence"]
    done = run_script("fusion_ablation.py", *args)
    assert done.returncode == 0, done.stderr
    ranking = table_rows(done.stdout, "variant")
    assert [row[0] for row in ranking] == [f"{name} (D-es)" for name in variants.split(",")]
    evidence = table_rows(done.stdout, "variant", which=1)
    assert {(row[0], row[1]) for row in evidence} == {
        (name, label) for name in variants.split(",") for label in ("D", "DP")
    }
    assert all(0.0 <= float(value) <= 1.0 for row in evidence for value in row[2:])


def test_network_alone_decodes_every_code_when_asked(
    fused_shortlist_bundle: Path, codiesp: Path
) -> None:
    args = ["--model", str(fused_shortlist_bundle), "--path", str(codiesp), "--codes", "D"]
    reports = {}
    for flags in ([], ["--full-decoding"]):
        done = run_script("network_alone.py", *args, *flags)
        assert done.returncode == 0, done.stderr
        reports[bool(flags)] = json.loads(done.stdout)
    assert reports[False]["ranking"].endswith("(as shipped)")
    assert reports[True]["ranking"].endswith("(every code)")
    for report in reports.values():
        assert 0.0 <= report["map"] <= 1.0
        assert 0.0 <= report["recall_at_15"] <= 1.0
