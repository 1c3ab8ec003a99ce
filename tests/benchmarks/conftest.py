"""Fixtures for the benchmark smoke tests: a few synthetic notes as a JSONL corpus, the tiny
factory bundle, and a tiny bundle whose graph is a real exported PlantClassifier (with its state
dict), so the PyTorch side of the latency script has the same network to rebuild.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from model.bundle import BundleMetadata, load_bundle, write_bundle
from tests.model.bundle_factory import DEFAULT_CODES, build_tiny_bundle, synthetic_notes
from training.corpora import Document, write_jsonl

REPO = Path(__file__).resolve().parents[2]
N_NOTES = 8


def run_script(script: str, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run `benchmarks/<script>` from the repository root, as the lead would."""
    return subprocess.run(
        [sys.executable, f"benchmarks/{script}", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def table_rows(report: str, first_header: str, which: int = 0) -> list[list[str]]:
    """The body rows of the `which`-th Markdown table whose first header cell is `first_header`."""
    lines = report.splitlines()
    starts = [i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |")]
    start = starts[which]
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


@pytest.fixture(scope="session")
def notes_corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding dev.jsonl: N_NOTES short synthetic notes."""
    folder = tmp_path_factory.mktemp("corpus")
    texts = synthetic_notes(list(DEFAULT_CODES.values()), n_notes=N_NOTES, seed=1)
    write_jsonl(
        (Document(id=f"n{i}", text=text, codes=()) for i, text in enumerate(texts)),
        folder / "dev.jsonl",
    )
    return folder


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_bundle(tmp_path_factory.mktemp("tiny") / "bundle")


@pytest.fixture(scope="session")
def plant_bundle(tiny_bundle: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(bundle dir, state dict path): the factory bundle's tokenizer and codes with a tiny real
    PlantClassifier exported as its graph."""
    import torch

    from model.nn.checkpoint import save_checkpoint
    from model.nn.export import export_onnx
    from model.nn.network import PlantClassifier, build_config

    work = tmp_path_factory.mktemp("plant")
    factory = load_bundle(tiny_bundle)
    metadata = factory.metadata.to_dict()
    torch.manual_seed(0)
    config = build_config(
        vocab_size=metadata["config"]["encoder"]["vocab_size"],
        n_codes=len(metadata["codes"]),
        emb_dim=8,
        hidden_dim=8,
        n_layers=1,
        chunk_len=16,
        window=16,
        inattention_k=4,
        l2r_dim=4,
        laat_dim=8,
        top_k_export=metadata["top_k_export"],
        # Full decoding: benchmarks/inference_latency.py feeds the graph ids and mask alone.
        first_stage=False,
    )
    model = PlantClassifier(config).eval()
    state_path = work / "classifier-all-test.pt"
    save_checkpoint(state_path, config.to_dict(), model.state_dict())
    graph = export_onnx(model, work / "model.onnx", top_k=metadata["top_k_export"])
    metadata["config"] = json.loads(json.dumps(config.to_dict()))
    bundle_dir = work / "bundle"
    write_bundle(bundle_dir, BundleMetadata.from_dict(metadata), graph, factory.tokenizer_path)
    return bundle_dir, state_path
