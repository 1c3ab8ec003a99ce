"""The mention lexicon alone on CodiEsp dev, as the accuracy issue defines it, beside the fused
model's own branches: every metric `plant-icd evaluate` prints, in both MAP conventions.

The lexicon: the training notes' evidence spans (projected onto the English translation for
`--lang en`), folded; a code's score is the noisy-OR of the precisions of its maximal matches.
Usage (prints a JSON line of metrics per ranking):

    python benchmarks/lexicon_alone.py --codes D --lang es [--path ../shared/codiesp]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from model.lexicon import links_by_code, noisy_or
from training.corpora.codiesp import locate_codiesp
from training.datasets import CorpusSpec, code_counts
from training.evaluate import gold_matrix
from training.fusion import fusion_documents
from training.lexicon import build_lexicon
from training.metric_report import OFFICIAL_DEPTH, evaluate_all
from training.metrics import mean_average_precision


def lexicon_scores(spec: CorpusSpec) -> tuple[np.ndarray, np.ndarray, list[str], np.ndarray]:
    """Scores (N_dev, C), gold (N_dev, C), codes and train counts for the evidence lexicon."""
    train = fusion_documents(spec.load("train"), spec)
    dev = spec.load("dev")
    lexicon = build_lexicon(train, mined=False)
    counts = code_counts(train)
    codes = sorted(lexicon.codes() | set(counts) | {c for doc in dev for c in doc.codes})
    column = {code: index for index, code in enumerate(codes)}
    scores = np.zeros((len(dev), len(codes)), dtype=np.float32)
    for row, document in enumerate(dev):
        for code, pairs in links_by_code(lexicon.find(document.text)).items():
            scores[row, column[code]] = noisy_or(link.weight for _, link in pairs)
    train_counts = np.array([counts.get(code, 0) for code in codes])
    return scores, gold_matrix(dev, codes), codes, train_counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--codes", default="D", choices=["D", "P"])
    parser.add_argument("--lang", default="es", choices=["es", "en"])
    parser.add_argument("--path", type=Path, default=None)
    args = parser.parse_args()
    root = locate_codiesp(args.path)
    spec = CorpusSpec(name="codiesp", path=str(root), lang=args.lang, codes=args.codes)
    scores, gold, codes, train_counts = lexicon_scores(spec)
    # Codes the lexicon never names stay at 0 and rank after every named code (by column order):
    # only named codes count as ranked, as in a submission of the lexicon's matches.
    report = evaluate_all(gold, scores, 0.5, train_counts, codes)
    # The official script on a submission of the named codes only: notes with no match leave
    # the mean (trectools), so this can exceed the all-codes figure.
    named = [
        [codes[c] for c in np.argsort(-row, kind="stable") if row[c] > 0][:OFFICIAL_DEPTH]
        for row in scores
    ]
    gold_codes = [[codes[c] for c in np.flatnonzero(row)] for row in gold]
    submitted = mean_average_precision(gold_codes, named, unranked_gold="skip")
    metrics = report.as_dict() | {"map_official_named_only": submitted}
    print(json.dumps({"ranking": f"lexicon-alone-{args.codes}-{args.lang}", **metrics}))


if __name__ == "__main__":
    main()
