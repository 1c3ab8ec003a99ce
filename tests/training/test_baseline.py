"""The TF-IDF baseline learns tell-tale words, round-trips through its directory, ranks sensibly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from model.bundle import BaselineMetadata, BundleError, read_model_metadata, sha256_file
from model.thresholds import Thresholds
from training.baseline import BaselineConfig, TfidfBaseline
from training.corpora import load_corpus
from training.datasets import label_order


def fit_baseline(corpus: Path) -> TfidfBaseline:
    documents = load_corpus("codiesp", corpus, "train", lang="en", codes="D")
    codes = label_order(documents)
    metadata = BaselineMetadata(
        name="test-baseline",
        version="1",
        created_at="2024-01-01T00:00:00Z",
        config={},
        codes=[{"code": code, "description": f"description of {code}"} for code in codes],
        code_system="icd10cm",
        thresholds=Thresholds.uniform(len(codes)).to_json(),
        train_code_counts=[1] * len(codes),
        corpus={"name": "codiesp", "split": "train", "fingerprint": "f"},
        training={},
    )
    return TfidfBaseline.fit(
        [doc.text for doc in documents],
        [doc.codes for doc in documents],
        BaselineConfig(min_df=1),
        metadata,
    )


def test_baseline_ranks_the_signalled_code_first(synthetic_codiesp: Path) -> None:
    model = fit_baseline(synthetic_codiesp)
    ranked = model.predict(["The patient has pneumonia with crackles."], top_k=3)[0]
    assert ranked[0].code == "J18.9"
    assert [p.rank for p in ranked] == [1, 2, 3]
    assert ranked[0].score > ranked[1].score >= ranked[2].score
    assert ranked[0].description == "description of J18.9"


def test_baseline_scores_are_probabilities_in_code_order(synthetic_codiesp: Path) -> None:
    model = fit_baseline(synthetic_codiesp)
    scores = model.scores(["fever and febrile", "diabetes on metformin"])
    assert scores.shape == (2, len(model.codes))
    assert ((scores > 0) & (scores < 1)).all()
    assert model.codes[int(scores[0].argmax())] == "R50.9"
    assert model.codes[int(scores[1].argmax())] == "E11.9"
    assert model.scores([]).shape == (0, len(model.codes))


def test_baseline_save_load_round_trip(synthetic_codiesp: Path, tmp_path: Path) -> None:
    model = fit_baseline(synthetic_codiesp)
    model.save(tmp_path / "baseline")
    loaded = TfidfBaseline.load(tmp_path / "baseline")
    notes = ["dysuria and urinary infection", "appendicitis in the right lower quadrant"]
    np.testing.assert_array_equal(loaded.scores(notes), model.scores(notes))
    assert list(loaded.codes) == list(model.codes)
    assert loaded.metadata == model.metadata
    assert loaded.metadata.name == "test-baseline"
    assert loaded.metadata.pipeline_sha256 == sha256_file(tmp_path / "baseline" / "baseline.joblib")


def test_a_changed_pipeline_file_is_refused_before_unpickling(
    synthetic_codiesp: Path, tmp_path: Path
) -> None:
    fit_baseline(synthetic_codiesp).save(tmp_path / "baseline")
    with (tmp_path / "baseline" / "baseline.joblib").open("ab") as pipeline:
        pipeline.write(b"\0")
    with pytest.raises(BundleError, match="baseline pipeline checksum mismatch"):
        TfidfBaseline.load(tmp_path / "baseline")
    with pytest.raises(BundleError, match="checksum mismatch"):
        read_model_metadata(tmp_path / "baseline")


def test_a_baseline_of_the_older_layout_names_its_version(
    synthetic_codiesp: Path, tmp_path: Path
) -> None:
    fit_baseline(synthetic_codiesp).save(tmp_path / "baseline")
    metadata_path = tmp_path / "baseline" / "bundle.json"
    raw = json.loads(metadata_path.read_text(encoding="utf-8"))
    metadata_path.write_text(json.dumps({**raw, "format_version": 1}), encoding="utf-8")
    with pytest.raises(BundleError, match=r"format_version 1 \(an older layout\)"):
        TfidfBaseline.load(tmp_path / "baseline")
