"""The network alone inside a fused bundle: its sigmoid scores over the codes it was trained on,
evaluated exactly as `plant-icd evaluate` evaluates a bundle (same metrics, same label space
padding for codes it cannot predict), so the ablation table's network row and fused row come
from one bundle. Prints one JSON line of metrics. Usage:

    python benchmarks/network_alone.py --model bundles/demo-d-es --codes D --lang es

`--full-decoding` has the graph decode every code the network knows, not the bundle's
shortlist of S: the network's own ranking, which is what planting changes (at S = 64 a code
seen once or twice is seldom decoded at all, so every planting variant scores 0 on it).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from model.bundle import load_bundle
from model.runtime import OnnxPredictor
from training.corpora.codiesp import locate_codiesp
from training.datasets import CorpusSpec
from training.evaluate import gold_matrix
from training.metric_report import evaluate_all


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--codes", default="D", choices=["D", "P"])
    parser.add_argument("--lang", default="es", choices=["es", "en"])
    parser.add_argument("--path", type=Path, default=None)
    parser.add_argument(
        "--full-decoding", action="store_true", help="decode every network code, not the top S"
    )
    args = parser.parse_args()
    spec = CorpusSpec("codiesp", str(locate_codiesp(args.path)), lang=args.lang, codes=args.codes)
    dev = spec.load("dev")
    shortlist = None
    if args.full_decoding:
        shipped = load_bundle(args.model).metadata  # read (and checksummed) once
        shortlist = shipped.n_network_codes if shipped.shortlist is not None else None
    # The sigmoid of the network's logits.
    predictor = OnnxPredictor(args.model, fused=False, shortlist_size=shortlist)
    metadata = predictor.metadata
    network_codes = list(predictor.codes)[: metadata.n_network_codes]
    network_scores = predictor.scores([doc.text for doc in dev])[:, : len(network_codes)]
    unknown = sorted({c for doc in dev for c in doc.codes} - set(network_codes))
    label_space = network_codes + unknown
    scores = np.full((len(dev), len(label_space)), -1.0, dtype=np.float32)
    scores[:, : len(network_codes)] = network_scores
    counts = list(metadata.train_code_counts[: len(network_codes)]) + [0] * len(unknown)
    report = evaluate_all(
        gold_matrix(dev, label_space),
        scores,
        0.5,
        np.asarray(counts),
        label_space,
        rank_depth=len(network_codes),
    )
    decoding = "every code" if args.full_decoding else "as shipped"
    ranking = f"network-alone-{args.model.name} ({decoding})"
    print(json.dumps({"ranking": ranking, **report.as_dict()}))


if __name__ == "__main__":
    main()
