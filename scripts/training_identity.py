"""Fingerprint one `tiny` training run on the synthetic corpus, to show that a refactor of the
training code changes nothing: the dev metrics and the exported graph's sha256.

    PYTHONPATH=. python scripts/training_identity.py OUT.json [--work DIR]

Run it before and after a change (same seed, fresh stage cache) and compare the two files. The
tiny preset trains in about a minute on 2 CPU cores; the demo and paper presets are never used.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.bundle import sha256_file
from tests.training.synthetic import write_synthetic_codiesp
from training.datasets import CorpusSpec
from training.plant import TrainOptions, run_training


def fingerprint_run(work: Path, *, plant: bool, fusion: bool) -> dict[str, object]:
    corpus = write_synthetic_codiesp(work / "corpus")
    spec = CorpusSpec("codiesp", str(corpus), lang="en", codes="D")
    out = work / f"bundle-{'plant' if plant else 'lant'}-{'fused' if fusion else 'net'}"
    options = TrainOptions(
        spec=spec, out=out, preset="tiny", plant=plant, fusion=fusion, work_dir=work / "cache"
    )
    run_training(options)
    metadata = json.loads((out / "bundle.json").read_text(encoding="utf-8"))
    return {
        "dev_metrics": metadata["dev_metrics"],
        "thresholds": metadata["thresholds"],
        "model.onnx": sha256_file(out / "model.onnx"),
        "tokenizer.json": sha256_file(out / "tokenizer.json"),
        "fusion_files": (metadata.get("fusion") or {}).get("files", {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="plant-identity-"))
    result = {
        "plant_fused": fingerprint_run(work, plant=True, fusion=True),
        "lant_net": fingerprint_run(work, plant=False, fusion=False),
    }
    args.out.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print(json.dumps({k: v["model.onnx"] for k, v in result.items()}, indent=2))


if __name__ == "__main__":
    main()
