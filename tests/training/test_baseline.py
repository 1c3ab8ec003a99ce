"""The TF-IDF baseline learns tell-tale words, round-trips through its directory, ranks sensibly."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from training.baseline import BaselineConfig, TfidfBaseline
from training.corpora import load_corpus
from training.datasets import label_order


def fit_baseline(corpus: Path) -> TfidfBaseline:
    documents = load_corpus("codiesp", corpus, "train", lang="en", codes="D")
    codes = label_order(documents)
    return TfidfBaseline.fit(
        [doc.text for doc in documents],
        [doc.codes for doc in documents],
        codes,
        BaselineConfig(min_df=1),
        descriptions=[f"description of {code}" for code in codes],
        metadata={"name": "test-baseline"},
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
    assert loaded.metadata["name"] == "test-baseline"
