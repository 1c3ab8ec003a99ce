"""Ablations of the fused model's torch-free branches on CodiEsp dev, with the production code.

Each variant fits the combiner on out-of-fold rows of the training notes (training/fusion.py),
rebuilds the branches on all training notes, and ranks the dev notes' candidates; codes no branch
proposes rank after them. Without the network (the shipped combiner does not read it), so the
figures isolate the lexicon, the neighbours, the catalogue, the English projection and the
context rules. Prints one Markdown row per variant, MAP in both conventions. Usage:

    python benchmarks/fusion_ablation.py --codes D --lang es [--path ../shared/codiesp]

With `--evidence` (Spanish: the X offsets point into the Spanish text) each variant is also scored
as the served bundle's evidence is: thresholds tuned on the dev scores (training/thresholds.py,
as `plant-icd train` tunes them), the codes above them with their lexicon evidence
(`model.lexicon_evidence`), CodiEsp-X precision/recall/F1 and hit@1 (training/evidence.py). The
served demo bundle adds the network's ranking of codes no branch proposes and attention phrases
for codes without a lexicon match. `--codes DP` runs D and P and adds the combined X row.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
from _common import command_line, load_average, markdown_table

from model.context import ContextRules
from model.fusion import FEATURES, FeatureBuilder, demote_negated_only
from model.lexicon_evidence import lexicon_evidence
from model.prediction import sigmoid
from training.corpora.base import Document, EvidenceReference
from training.corpora.codiesp import locate_codiesp, read_codiesp_references
from training.datasets import CorpusSpec
from training.evaluate import known_gold_matrix
from training.evidence import CodeEvidence, evidence_report, hit_at_one, x_scores
from training.fusion import (
    FusionRows,
    FusionSettings,
    build_features,
    corpus_catalogue,
    fit_combiner,
    fusion_documents,
    negated_only_factor,
    out_of_fold_rows,
    score_rows,
)
from training.metric_report import OFFICIAL_DEPTH
from training.metrics import mean_average_precision
from training.thresholds import tune_thresholds

VARIANTS = {
    "fused (shipped settings)": {},
    "without context rules": {"context": False},
    "without catalogue": {"catalogue": False},
    "without partial phrases": {"partial": False},
    "without split mentions": {"split": False},
    "without evidence snapping": {"snap": False},
    "without mined n-grams": {"mined": False},
    "without evidence spans (mined + catalogue)": {"evidence": False},
    "without negation demotion": {"negated_only_factor": 1.0},
}


def ranked_codes(rows: FusionRows, scores: np.ndarray, n_notes: int) -> list[list[str]]:
    ranked: list[list[str]] = [[] for _ in range(n_notes)]
    codes = np.array(rows.codes)
    for index in np.lexsort((codes, -scores, rows.note_index)):
        ranked[rows.note_index[index]].append(rows.codes[index])
    return ranked


def served_evidence(
    builder: FeatureBuilder,
    rows: FusionRows,
    probabilities: np.ndarray,
    train: list[Document],
    dev: list[Document],
    label: str,
) -> list[CodeEvidence]:
    """The codes above thresholds tuned on dev, as `plant-icd train` tunes them over the bundle's
    label space (training codes and every code the lexicon names), with their lexicon evidence."""
    codes = sorted(
        builder.lexicon.codes() | set(rows.codes) | {c for doc in train for c in doc.codes}
    )
    column = {code: index for index, code in enumerate(codes)}
    matrix = np.zeros((len(dev), len(codes)))  # (N, C): codes no branch proposes score 0
    matrix[rows.note_index, [column[code] for code in rows.codes]] = probabilities
    thresholds = tune_thresholds(known_gold_matrix(dev, codes), matrix).per_code
    predicted: list[CodeEvidence] = []
    for note, document in enumerate(dev):
        above = np.flatnonzero(matrix[note] >= thresholds)
        ranked = [codes[index] for index in above[np.argsort(-matrix[note][above], kind="stable")]]
        evidence = lexicon_evidence(builder.signals(document.text), document.text, ranked)
        predicted += [
            CodeEvidence(
                document.id,
                label,
                code,
                tuple((item.start, item.end) for item in evidence.get(code, ())),
            )
            for code in ranked
        ]
    return predicted


def run_variant(
    spec: CorpusSpec,
    train: list[Document],
    dev: list[Document],
    options: dict[str, bool],
    evidence: bool = False,
) -> dict[str, Any]:
    changes: dict[str, Any] = {k: v for k, v in options.items() if k != "context"}
    settings = replace(FusionSettings(), **changes)
    catalogue = corpus_catalogue(spec) if settings.catalogue else None
    context = ContextRules.for_language(spec.lang) if options.get("context", True) else None
    started = time.perf_counter()
    booster = fit_combiner(out_of_fold_rows(train, settings, catalogue, context=context), settings)
    builder = build_features(train, settings, catalogue, context)
    rows = score_rows(builder, dev)
    # As the bundle serves them (FusedScorer.probabilities).
    scores = demote_negated_only(
        sigmoid(booster.predict(rows.features, raw_score=True)),
        rows.features,
        negated_only_factor(spec, settings),
    )
    gold = [list(document.codes) for document in dev]
    ranked = ranked_codes(rows, scores, len(dev))
    lexicon_column = FEATURES.index("evidence_noisy_or")
    predicted = served_evidence(builder, rows, scores, train, dev, spec.codes) if evidence else []
    return {
        "evidence": predicted,
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
    parser.add_argument("--codes", default="D", choices=["D", "P", "DP"])
    parser.add_argument("--lang", default="es", choices=["es", "en"])
    parser.add_argument("--path", type=Path, default=None)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated names")
    parser.add_argument(
        "--evidence", action="store_true", help="also CodiEsp-X scores (Spanish only)"
    )
    args = parser.parse_args()
    if args.evidence and args.lang != "es":
        parser.error("--evidence needs --lang es: the X offsets point into the Spanish text")
    root = locate_codiesp(args.path)
    rows = []
    found: dict[str, list[CodeEvidence]] = {}
    references: list[EvidenceReference] = []
    for label in args.codes:
        spec = CorpusSpec("codiesp", str(root), lang=args.lang, codes=label)
        train = fusion_documents(spec.load("train"), spec)
        dev = spec.load("dev")
        if args.evidence:
            references += read_codiesp_references(root, "dev", codes=label)
        for name in args.variants.split(","):
            result = run_variant(spec, train, dev, VARIANTS[name], args.evidence)
            found.setdefault(name, []).extend(result["evidence"])
            rows.append(
                [
                    f"{name} ({label}-{args.lang})",
                    f"{result['map']:.3f}",
                    f"{result['map_official']:.3f}",
                    f"{result['candidate_recall']:.3f}",
                    f"{result['seconds']:.0f}",
                ]
            )
    headers = ["variant", "MAP", "MAP (official)", "candidate recall", "seconds"]
    print(f"`{command_line()}` (load {load_average()})\n")
    print(markdown_table(headers, rows))
    if args.evidence:
        print("\nCodiEsp-X, the codes above thresholds tuned on dev, lexicon evidence:\n")
        print(markdown_table(EVIDENCE_HEADERS, evidence_rows(found, references)))


EVIDENCE_HEADERS = ["variant", "label", "X P", "X R", "X F1", "hit@1", "overlap@1"]


def evidence_rows(
    found: dict[str, list[CodeEvidence]], references: list[EvidenceReference]
) -> list[list[str]]:
    rows = []
    for name, predicted in found.items():
        report = evidence_report(x_scores(predicted, references), hit_at_one(predicted, references))
        for label, values in report.items():
            if values["gold"]:
                rows.append(
                    [
                        name,
                        label,
                        *(f"{float(values[key]):.3f}" for key in ("precision", "recall", "f1")),
                        f"{float(values['hit_at_1_rule']):.3f}",
                        f"{float(values['hit_at_1_overlap']):.3f}",
                    ]
                )
    return rows


if __name__ == "__main__":
    main()
