"""measure_shortlist: recall and MAP per S through the served runtime; S covering every code is
full decoding."""

from __future__ import annotations

from pathlib import Path

import pytest

from model.runtime import OnnxPredictor
from tests.model.bundle_factory import build_tiny_bundle, synthetic_notes
from tests.model.shortlist_bundle import SHORTLIST_CODES, build_shortlist_bundle
from training.corpora.base import Document
from training.shortlist_report import measure_shortlist


def dev_documents() -> list[Document]:
    texts = synthetic_notes([("fever", "fiebre"), ("cough", "tos")], n_notes=12, seed=3)
    codes = [("R50.9",) if "fever" in text or "fiebre" in text else ("R05",) for text in texts]
    return [
        Document(f"d{i}", text, code)
        for i, (text, code) in enumerate(zip(texts, codes, strict=True))
    ]


def test_rows_per_size_and_full_decoding_loses_nothing(tmp_path: Path) -> None:
    bundle_dir, _ = build_shortlist_bundle(tmp_path / "b", size=3)
    documents = dev_documents()
    small, every = measure_shortlist(bundle_dir, documents, [2, len(SHORTLIST_CODES)], threads=1)
    assert (small.size, every.size) == (2, len(SHORTLIST_CODES))
    assert every.first_stage_recall == every.decoded_recall == 1.0
    assert every.map == every.map_full and every.map_drop == 0.0
    assert every.mean_decoded == len(SHORTLIST_CODES)
    # S = 2 still decodes the graph's top K (2) codes: recall of what is decoded >= first stage's.
    assert small.mean_decoded == 2 and small.decoded_recall >= small.first_stage_recall
    assert small.map_full == every.map_full
    assert OnnxPredictor(bundle_dir).shortlist_size == 3  # the bundle itself is unchanged


def test_a_bundle_without_a_shortlist_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="has no shortlist"):
        measure_shortlist(build_tiny_bundle(tmp_path / "full"), dev_documents(), [2])
