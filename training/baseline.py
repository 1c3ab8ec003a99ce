"""TF-IDF (word 1-2 grams) + one-vs-rest logistic regression: the baseline every model must beat.

It implements `model.prediction.Predictor`, so evaluation treats it exactly like a PLANT bundle.
Saved as a directory: `bundle.json` (kind "tfidf-logreg") beside a joblib file of the pipeline.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from model.prediction import CodePrediction
from training.thresholds import Thresholds

BASELINE_KIND = "tfidf-logreg"
PIPELINE_FILE = "baseline.joblib"


@dataclass
class BaselineConfig:
    max_features: int = 50_000
    min_df: int = 2
    ngram_max: int = 2
    c: float = 10.0  # inverse L2 strength; rare codes need weak regularisation to rank at all
    class_weight: str | None = "balanced"


class TfidfBaseline:
    """One logistic regression per code over shared TF-IDF features."""

    def __init__(
        self,
        codes: Sequence[str],
        vectorizer: TfidfVectorizer,
        weights: np.ndarray,
        bias: np.ndarray,
        descriptions: Sequence[str],
        thresholds: Thresholds,
        metadata: dict[str, Any],
    ) -> None:
        self._codes = list(codes)
        self.vectorizer = vectorizer
        self.weights = weights  # (F, C)
        self.bias = bias  # (C,)
        self.descriptions = list(descriptions)
        self.thresholds = thresholds
        self.metadata = metadata

    @property
    def codes(self) -> Sequence[str]:
        return self._codes

    @classmethod
    def fit(
        cls,
        texts: Sequence[str],
        code_sets: Sequence[Sequence[str]],
        codes: Sequence[str],
        config: BaselineConfig,
        descriptions: Sequence[str],
        metadata: dict[str, Any],
        progress: Callable[[int, int], None] | None = None,
    ) -> TfidfBaseline:
        """Fit on training texts; `codes` fixes the column order (every code needs a positive)."""
        vectorizer = TfidfVectorizer(
            ngram_range=(1, config.ngram_max),
            min_df=config.min_df,
            max_features=config.max_features,
            sublinear_tf=True,
            strip_accents=None,
            lowercase=True,
        )
        features = vectorizer.fit_transform(texts)  # (N, F) sparse
        index = {code: i for i, code in enumerate(codes)}
        y = np.zeros((len(texts), len(codes)), dtype=np.int8)
        for row, doc_codes in enumerate(code_sets):
            for code in doc_codes:
                if code in index:
                    y[row, index[code]] = 1
        weights = np.zeros((features.shape[1], len(codes)), dtype=np.float32)
        bias = np.zeros(len(codes), dtype=np.float32)
        for col in range(len(codes)):
            target = y[:, col]
            if target.min() == target.max():
                # A code present in every (or no) training note: a constant score.
                bias[col] = 10.0 if target[0] else -10.0
            else:
                classifier = LogisticRegression(
                    C=config.c, class_weight=config.class_weight, solver="liblinear", max_iter=200
                )
                classifier.fit(features, target)
                weights[:, col] = classifier.coef_[0]
                bias[col] = classifier.intercept_[0]
            if progress is not None:
                progress(col + 1, len(codes))
        neutral = Thresholds(
            global_threshold=0.5,
            per_code=np.full(len(codes), 0.5, dtype=np.float64),
            min_positives=0,
        )
        return cls(codes, vectorizer, weights, bias, descriptions, neutral, metadata)

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, len(self._codes)), dtype=np.float32)
        features = self.vectorizer.transform(texts)  # (N, F) sparse
        logits = np.asarray(features @ self.weights) + self.bias  # (N, C)
        return (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)

    def predict(self, texts: Sequence[str], top_k: int | None = None) -> list[list[CodePrediction]]:
        scores = self.scores(texts)
        per_code = np.asarray(self.thresholds.per_code)
        ranked_notes: list[list[CodePrediction]] = []
        for row in scores:
            order = np.argsort(-row, kind="stable")
            if top_k is not None:
                order = order[:top_k]
            ranked_notes.append(
                [
                    CodePrediction(
                        code=self._codes[col],
                        description=self.descriptions[col],
                        score=float(row[col]),
                        rank=rank,
                        above_threshold=bool(row[col] >= per_code[col]),
                    )
                    for rank, col in enumerate(order, start=1)
                ]
            )
        return ranked_notes

    def save(self, directory: Path) -> Path:
        directory.mkdir(parents=True, exist_ok=True)
        joblib.dump(
            {"vectorizer": self.vectorizer, "weights": self.weights, "bias": self.bias},
            directory / PIPELINE_FILE,
        )
        metadata = {
            **self.metadata,
            "kind": BASELINE_KIND,
            "codes": [
                {"code": code, "description": description}
                for code, description in zip(self._codes, self.descriptions, strict=True)
            ],
            "thresholds": self.thresholds.to_json(),
        }
        (directory / "bundle.json").write_text(json.dumps(metadata, indent=2), encoding="utf-8")
        return directory

    @classmethod
    def load(cls, directory: Path) -> TfidfBaseline:
        metadata = json.loads((directory / "bundle.json").read_text(encoding="utf-8"))
        if metadata.get("kind") != BASELINE_KIND:
            raise ValueError(f"{directory} is not a {BASELINE_KIND} model (bundle.json kind)")
        # joblib unpickles: load only model directories you produced yourself.
        pipeline = joblib.load(directory / PIPELINE_FILE)
        codes = [entry["code"] for entry in metadata["codes"]]
        descriptions = [entry["description"] for entry in metadata["codes"]]
        return cls(
            codes,
            pipeline["vectorizer"],
            pipeline["weights"],
            pipeline["bias"],
            descriptions,
            Thresholds.from_json(metadata["thresholds"]),
            metadata,
        )
