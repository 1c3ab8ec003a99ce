"""Ablations of the fused model's torch-free branches on CodiEsp dev, with the production code.

Each variant fits the combiner on out-of-fold rows of the training notes (training/fusion.py),
rebuilds the branches on all training notes, and ranks the dev notes' candidates; codes no branch
proposes rank after them. Without the network (the shipped combiner does not read it), so the
figures isolate the lexicon, the neighbours, the catalogue, the English projection and the
context rules. Prints one Markdown row per variant, MAP in both conventions. Usage:

    python benchmarks/fusion_ablation.py --codes D --lang es [--path ../shared/codiesp]
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from _common import command_line, load_average, markdown_table

from model.context import ContextRules
from model.fusion import FEATURES
from training.corpora.codiesp import locate_codiesp
from training.datasets import CorpusSpec
from training.fusion import (
    FusionRows,
    FusionSettings,
    build_features,
    corpus_catalogue,
    fit_combiner,
    fusion_documents,
    out_of_fold_rows,
    score_rows,
)
from training.metric_report import OFFICIAL_DEPTH
from training.metrics import mean_average_precision

VARIANTS = {
    "fused (shipped settings)": {},
    "without context rules": {"context": False},
    "without catalogue": {"catalogue": False},
    "without partial phrases": {"partial": False},
    "without split mentions": {"split": False},
    "without mined n-grams": {"mined": False},
    "without evidence spans (mined + catalogue)": {"evidence": False},
}


def ranked_codes(rows: FusionRows, scores: np.ndarray, n_notes: int) -> list[list[str]]:
    ranked: list[list[str]] = [[] for _ in range(n_notes)]
    codes = np.array(rows.codes)
    for index in np.lexsort((codes, -scores, rows.note_index)):
        ranked[rows.note_index[index]].append(rows.codes[index])
    return ranked


def run_variant(spec: CorpusSpec, train, dev, options: dict[str, bool]) -> dict[str, float]:  # type: ignore[no-untyped-def]
    settings = replace(FusionSettings(), **{k: v for k, v in options.items() if k != "context"})
    catalogue = corpus_catalogue(spec) if settings.catalogue else None
    context = ContextRules.for_language(spec.lang) if options.get("context", True) else None
    started = time.perf_counter()
    booster = fit_combiner(out_of_fold_rows(train, settings, catalogue, context=context), settings)
    builder = build_features(train, settings, catalogue, context)
    rows = score_rows(builder, dev)
    scores = booster.predict(rows.features, raw_score=True)
    gold = [list(document.codes) for document in dev]
    ranked = ranked_codes(rows, scores, len(dev))
    lexicon_column = FEATURES.index("evidence_noisy_or")
    return {
        "map": mean_average_precision(gold, ranked),
        "map_official": mean_average_precision(
            gold, ranked, max_rank=OFFICIAL_DEPTH, unranked_gold="skip"
        ),
        "candidate_recall": rows.candidate_recall,
        "lexicon_rows": float((rows.features[:, lexicon_column] > 0).sum()),
        "seconds": time.perf_counter() - started,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codes", default="D", choices=["D", "P"])
    parser.add_argument("--lang", default="es", choices=["es", "en"])
    parser.add_argument("--path", type=Path, default=None)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names")
    args = parser.parse_args()
    spec = CorpusSpec("codiesp", str(locate_codiesp(args.path)), lang=args.lang, codes=args.codes)
    train = fusion_documents(spec.load("train"), spec)
    dev = spec.load("dev")
    rows = []
    for name in args.variants.split(","):
        result = run_variant(spec, train, dev, VARIANTS[name])
        rows.append(
            [
                f"{name} ({args.codes}-{args.lang})",
                f"{result['map']:.3f}",
                f"{result['map_official']:.3f}",
                f"{result['candidate_recall']:.3f}",
                f"{result['seconds']:.0f}",
            ]
        )
    headers = ["variant", "MAP", "MAP (official)", "candidate recall", "seconds"]
    print(f"`{command_line()}` (load {load_average()})\n")
    print(markdown_table(headers, rows))


if __name__ == "__main__":
    main()
