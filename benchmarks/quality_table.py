"""Markdown tables of dev-split quality from `plant-icd evaluate` outputs, for docs/BENCHMARKS.md.

Reads `<model>/eval-<corpus>-<split>/metrics.json` (written by `plant-icd evaluate`) and the
model's bundle.json (training seconds per stage). Usage:

    python benchmarks/quality_table.py bundles/baseline-d-en bundles/plant-d-en ...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

HEADLINE = (
    ("map", "MAP"),
    ("map_official", "MAP (official)"),
    ("micro_f1", "micro-F1"),
    ("macro_f1_mean", "macro-F1 (mean)"),
    ("macro_f1_harmonic", "macro-F1 (CAML)"),
    ("precision_at_5", "P@5"),
    ("precision_at_15", "P@15"),
    ("recall_at_15", "R@15"),
)
BUCKETS = ("unseen", "1-2", "3-10", ">10")


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}"


def load(model_dir: Path, split: str) -> tuple[dict[str, Any], dict[str, Any]]:
    metadata = json.loads((model_dir / "bundle.json").read_text())
    corpus = metadata.get("corpus", {}).get("name", "codiesp")
    metrics = json.loads((model_dir / f"eval-{corpus}-{split}" / "metrics.json").read_text())
    return metadata, metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--split", default="dev")
    args = parser.parse_args()
    rows = [(model, *load(model, args.split)) for model in args.models]

    print("| model | " + " | ".join(label for _, label in HEADLINE) + " |")
    print("|---" * (len(HEADLINE) + 1) + "|")
    for model, _, metrics in rows:
        values = " | ".join(_fmt(metrics.get(key)) for key, _ in HEADLINE)
        print(f"| {model.name} | {values} |")

    print()
    print(
        "By how often a code occurs in training (gold codes in the bucket; micro-F1 / R@15 / MAP):"
    )
    print()
    print("| model | " + " | ".join(f"{bucket} (n gold)" for bucket in BUCKETS) + " |")
    print("|---" * (len(BUCKETS) + 1) + "|")
    for model, _, metrics in rows:
        cells = []
        for bucket in BUCKETS:
            prefix = f"bucket.{bucket}."
            n_gold = metrics.get(prefix + "n_gold") or 0
            scores = " / ".join(
                _fmt(metrics.get(prefix + name)) for name in ("micro_f1", "recall_at_15", "map")
            )
            cells.append(f"{scores} ({int(n_gold)})")
        print(f"| {model.name} | " + " | ".join(cells) + " |")

    timed = [
        (model, metadata)
        for model, metadata, _ in rows
        if "seconds" in metadata.get("training", {})
    ]
    if timed:
        print()
        print("Training time per stage (seconds):")
        print()
        for model, metadata in timed:
            seconds = metadata["training"]["seconds"]
            if isinstance(seconds, dict):
                parts = ", ".join(f"{stage} {value:.0f}" for stage, value in seconds.items())
                total = sum(seconds.values())
                print(f"- {model.name}: {parts} (total {total:.0f})")
            else:
                print(f"- {model.name}: {seconds:.0f}")


if __name__ == "__main__":
    main()
