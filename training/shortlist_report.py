"""What the shortlist loses, for benchmarks and reports: per S, the first stage's recall of the
gold codes, the recall of what is decoded (forced codes included), and dev MAP as served against
full decoding, all through the runtime that serves (`OnnxPredictor(shortlist_size=S)`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model.runtime import OnnxPredictor
from training.corpora.base import Document
from training.evaluate import evaluate_predictor, known_gold_matrix


@dataclass(frozen=True)
class ShortlistRow:
    size: int  # S asked for
    first_stage_recall: float  # gold codes among the first stage's top S (network codes only)
    decoded_recall: float  # gold codes among the codes decoded (top S + forced)
    mean_decoded: float  # codes decoded per note, on average
    map: float  # MAP as served at this S (`evaluate_predictor`)
    map_full: float  # MAP with every code decoded
    map_official: float  # the CodiEsp script's convention (depth 1,000), at this S
    map_official_full: float

    @property
    def map_drop(self) -> float:
        return self.map_full - self.map


def _served_map(predictor: OnnxPredictor, documents: Sequence[Document]) -> tuple[float, float]:
    """MAP as served, in our convention and the official script's."""
    report = evaluate_predictor(predictor, documents).report.as_dict()
    return float(report["map"]), float(report["map_official"])


def measure_shortlist(
    bundle_dir: str | Path,
    documents: Sequence[Document],
    sizes: Sequence[int],
    *,
    threads: int | None = None,
    fused: bool = True,
) -> list[ShortlistRow]:
    """One row per S in `sizes` for the bundle's shortlist on `documents` (e.g. dev). Recall
    counts the gold codes the network scores (a code only the fusion knows is never decoded);
    `fused=False` measures the network alone."""
    full = OnnxPredictor(bundle_dir, threads=threads, fused=fused)
    n_network = full.metadata.n_network_codes
    if full.shortlist_size is None:
        raise ValueError(f"{bundle_dir} has no shortlist: it always decodes every code")
    full = OnnxPredictor(bundle_dir, threads=threads, fused=fused, shortlist_size=n_network)
    map_full, official_full = _served_map(full, documents)
    gold = known_gold_matrix(documents, list(full.codes))[:, :n_network].astype(bool)  # (N, C)
    n_gold = max(int(gold.sum()), 1)
    texts = [document.text for document in documents]
    rows = []
    for size in sizes:
        predictor = OnnxPredictor(bundle_dir, threads=threads, fused=fused, shortlist_size=size)
        run = predictor.shortlists(texts)
        first_found = decoded_found = 0
        for note, (first, decoded) in enumerate(zip(run.first_stage, run.decoded, strict=True)):
            top = np.argsort(-first, kind="stable")[:size]
            first_found += int(gold[note, top].sum())
            decoded_found += int(gold[note, decoded].sum())
        served, official = _served_map(predictor, documents)
        rows.append(
            ShortlistRow(
                size=size,
                first_stage_recall=first_found / n_gold,
                decoded_recall=decoded_found / n_gold,
                mean_decoded=float(np.mean([len(decoded) for decoded in run.decoded])),
                map=served,
                map_full=map_full,
                map_official=official,
                map_official_full=official_full,
            )
        )
    return rows
