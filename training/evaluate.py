"""Evaluate any saved model (PLANT bundle or baseline) on a corpus split, the way it is served.

PLANT bundles are read through `model.runtime.OnnxPredictor`, the module the service uses, so what
is evaluated is what is served; every model directory is opened through the checked loader
(`model.bundle.read_model_metadata`), and the thresholds are the predictor's. Gold codes the model
cannot predict stay in the label space with score 0: they count as misses, never silently dropped.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.bundle import BundleMetadata, read_model_metadata
from model.prediction import Predictor
from training.corpora.base import Document
from training.metric_report import MetricReport, evaluate_all

RANKED_CODES_WRITTEN = 100  # CodiEsp MAP reads the ranked list; deeper ranks add nothing measurable


def load_predictor(directory: Path) -> Predictor:
    """Open a model directory by the kind its bundle.json declares, checksums verified."""
    metadata = read_model_metadata(directory)
    if isinstance(metadata, BundleMetadata):
        from model.runtime import OnnxPredictor

        return OnnxPredictor(directory)
    from training.baseline import TfidfBaseline

    return TfidfBaseline.load(directory)


@dataclass
class Evaluation:
    report: MetricReport
    label_space: list[str]  # model codes, then gold codes the model does not know
    n_model_codes: int
    scores: np.ndarray  # (N, len(label_space))
    document_ids: list[str]


def gold_matrix(documents: Sequence[Document], label_space: Sequence[str]) -> np.ndarray:
    index = {code: col for col, code in enumerate(label_space)}
    y_true = np.zeros((len(documents), len(label_space)), dtype=bool)
    for row, document in enumerate(documents):
        for code in document.codes:
            y_true[row, index[code]] = True
    return y_true


def known_gold_matrix(documents: Sequence[Document], codes: Sequence[str]) -> np.ndarray:
    """Gold (N, C) over a model's own codes only: what threshold tuning and model selection see.

    Gold codes outside the model's label space cannot be learned or thresholded; evaluation
    (`evaluate_predictor`) still counts them as misses.
    """
    known = set(codes)
    return gold_matrix(
        [
            Document(doc.id, doc.text, tuple(code for code in doc.codes if code in known))
            for doc in documents
        ],
        codes,
    )


def evaluate_predictor(
    predictor: Predictor, documents: Sequence[Document], scores: np.ndarray | None = None
) -> Evaluation:
    """Score `documents` (unless their `scores` are given) and compute every metric with the
    thresholds the predictor decides with."""
    if not documents:
        raise ValueError("no documents to evaluate: check --corpus, --path and --split")
    model_codes = list(predictor.codes)
    known = set(model_codes)
    unknown = sorted({code for doc in documents for code in doc.codes if code not in known})
    label_space = model_codes + unknown

    if scores is None:
        scores = predictor.scores([document.text for document in documents])  # (N, C)
    # Codes the model cannot predict score -1: below any probability, so always ranked last.
    padded_scores = np.full((len(documents), len(label_space)), -1.0, dtype=np.float32)
    padded_scores[:, : len(model_codes)] = scores

    thresholds = np.concatenate(
        [np.asarray(predictor.thresholds, dtype=np.float64), np.full(len(unknown), np.inf)]
    )
    train_counts = np.concatenate(
        [
            np.asarray(predictor.train_code_counts, dtype=np.int64),
            np.zeros(len(unknown), dtype=np.int64),
        ]
    )
    report = evaluate_all(
        gold_matrix(documents, label_space),
        padded_scores,
        thresholds,
        train_counts,
        label_space,
        rank_depth=len(model_codes),
    )
    return Evaluation(
        report,
        label_space,
        len(model_codes),
        padded_scores,
        [document.id for document in documents],
    )


def json_safe(metrics: dict[str, float]) -> dict[str, float | None]:
    """Undefined metrics (NaN: e.g. MAP of an empty bucket) become null, so the JSON is strict."""
    return {name: (None if math.isnan(value) else value) for name, value in metrics.items()}


def ranked_codes(
    evaluation: Evaluation, depth: int = RANKED_CODES_WRITTEN
) -> list[list[tuple[str, float]]]:
    """Per document, (code, score) best first; codes the model cannot predict are left out."""
    rows: list[list[tuple[str, float]]] = []
    for row in evaluation.scores:
        order = np.argsort(-row, kind="stable")[:depth]
        rows.append(
            [
                (evaluation.label_space[col], float(row[col]))
                for col in order
                if col < evaluation.n_model_codes
            ]
        )
    return rows


def write_predictions(
    evaluation: Evaluation, out_dir: Path, lower_case_tsv: bool
) -> tuple[Path, Path]:
    """Ranked predictions as JSONL and as CodiEsp TSV (case<TAB>code, best first)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    jsonl_path = out_dir / "predictions.jsonl"
    tsv_path = out_dir / "predictions.tsv"
    ranked = ranked_codes(evaluation)
    with (
        jsonl_path.open("w", encoding="utf-8") as jsonl,
        tsv_path.open("w", encoding="utf-8") as tsv,
    ):
        for document_id, codes in zip(evaluation.document_ids, ranked, strict=True):
            jsonl.write(
                json.dumps(
                    {
                        "id": document_id,
                        "codes": [
                            {"code": code, "score": round(score, 6)} for code, score in codes
                        ],
                    }
                )
                + "\n"
            )
            for code, _ in codes:
                tsv.write(f"{document_id}\t{code.lower() if lower_case_tsv else code}\n")
    return jsonl_path, tsv_path
