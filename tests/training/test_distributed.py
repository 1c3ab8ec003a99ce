"""`plant-icd train` under torchrun: 2 CPU processes (gloo) train one model data-parallel.

Rank 0 writes the stage cache and the bundle; both ranks must take part (DDP would hang
otherwise), and the result must be a working bundle.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from model.runtime import OnnxPredictor
from training.distributed import DistContext, shard


def test_shard_gives_every_rank_the_same_count() -> None:
    items = list(range(7))
    ranks = [shard(items, DistContext(rank=r, world_size=2)) for r in range(2)]
    assert ranks == [[0, 2, 4], [1, 3, 5]]  # the odd tail (6) is dropped on both
    assert shard(items, DistContext()) == items


@pytest.mark.timeout(300)
def test_torchrun_two_processes_trains_a_bundle(synthetic_codiesp: Path, tmp_path: Path) -> None:
    torchrun = shutil.which("torchrun", path=str(Path(sys.executable).parent))
    if torchrun is None:
        pytest.skip("torchrun is not installed beside this Python (install the train extra)")
    out, work = tmp_path / "bundle", tmp_path / "work"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "120"}
    completed = subprocess.run(
        [
            torchrun,
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "training.cli",
            "train",
            "--path",
            str(synthetic_codiesp),
            "--preset",
            "tiny",
            "--out",
            str(out),
            "--work-dir",
            str(work),
        ],
        capture_output=True,
        text=True,
        timeout=280,
        env=env,
        cwd=Path(__file__).resolve().parents[2],
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    assert "data-parallel on 2 processes (cpu)" in completed.stderr + completed.stdout
    metadata = json.loads((out / "bundle.json").read_text())
    # Each rank read half the LM stream; the report counts both halves.
    assert metadata["training"]["lm"]["train_tokens"] > 0
    assert metadata["dev_metrics"]["map"] > 0.5
    ranked = OnnxPredictor(out).predict(["Fever and febrile. Dysuria."], top_k=2)[0]
    assert len(ranked) == 2
