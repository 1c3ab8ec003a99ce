"""Evaluation keeps gold codes the model cannot predict as misses and writes CodiEsp TSV."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from model.prediction import CodePrediction
from training.corpora.base import Document
from training.evaluate import evaluate_predictor, json_safe, write_predictions


class FixedPredictor:
    """Scores given per note, for two codes, each decided at 0.5."""

    def __init__(self, scores: dict[str, list[float]]) -> None:
        self._scores = scores

    @property
    def codes(self) -> Sequence[str]:
        return ["A00.0", "B00.0"]

    @property
    def thresholds(self) -> np.ndarray:
        return np.array([0.5, 0.5])

    @property
    def train_code_counts(self) -> Sequence[int]:
        return [12, 1]

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        return np.array([self._scores[text] for text in texts], dtype=np.float32)

    def predict(self, texts: Sequence[str], top_k: int | None = None) -> list[list[CodePrediction]]:
        raise NotImplementedError


def test_unknown_gold_codes_count_as_misses(tmp_path: Path) -> None:
    documents = [
        Document("d1", "note one", ("A00.0", "C00.0")),  # C00.0 unknown to the model
        Document("d2", "note two", ("B00.0",)),
    ]
    predictor = FixedPredictor({"note one": [0.9, 0.2], "note two": [0.1, 0.8]})
    evaluation = evaluate_predictor(predictor, documents)
    metrics = evaluation.report.as_dict()
    # Predicted: d1 {A00.0}, d2 {B00.0}: 2 true positives; the unknown C00.0 is a miss.
    assert metrics["micro_precision"] == pytest.approx(1.0)
    assert metrics["micro_recall"] == pytest.approx(2 / 3)
    assert evaluation.label_space == ["A00.0", "B00.0", "C00.0"]
    # d1: A00.0 at rank 1 (AP contribution 1/1), C00.0 never ranked -> AP = 1/2; d2: AP = 1.
    assert metrics["map"] == pytest.approx(0.75)

    jsonl_path, tsv_path = write_predictions(evaluation, tmp_path, lower_case_tsv=True)
    assert tsv_path.read_text().splitlines() == [
        "d1\ta00.0",
        "d1\tb00.0",
        "d2\tb00.0",
        "d2\ta00.0",
    ]
    first = json.loads(jsonl_path.read_text().splitlines()[0])
    assert first["id"] == "d1"
    assert [entry["code"] for entry in first["codes"]] == ["A00.0", "B00.0"]


def test_evaluate_refuses_an_empty_split() -> None:
    with pytest.raises(ValueError, match="no documents"):
        evaluate_predictor(FixedPredictor({}), [])


def test_json_safe_turns_nan_into_null() -> None:
    assert json_safe({"map": float("nan"), "f1": 0.5}) == {"map": None, "f1": 0.5}
