"""TF-IDF (word 1-2 grams) + one-vs-rest logistic regression: the baseline every model must beat.

It implements `model.prediction.Predictor`, so evaluation treats it exactly like a PLANT bundle.
Saved as a directory: `bundle.json` (`model.metadata.BaselineMetadata`, kind "tfidf-logreg") beside
a joblib file of the pipeline, whose checksum is verified before it is unpickled.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import joblib
import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from model.bundle import (
    BASELINE_KIND,
    BASELINE_PIPELINE_FILE,
    BaselineMetadata,
    read_model_metadata,
    write_baseline,
)
from model.prediction import CodePrediction, sigmoid


@dataclass
class BaselineConfig:
    max_features: int = 50_000
    min_df: int = 2
    ngram_max: int = 2
    c: float = 10.0  # inverse L2 strength; rare codes need weak regularisation to rank at all
    class_weight: str | None = "balanced"


class TfidfBaseline:
    """One logistic regression per code over shared TF-IDF features.

    `metadata` is its bundle.json record: codes, descriptions and thresholds come from it.
    """

    def __init__(
        self,
        vectorizer: TfidfVectorizer,
        weights: np.ndarray,
        bias: np.ndarray,
        metadata: BaselineMetadata,
    ) -> None:
        self.vectorizer = vectorizer
        self.weights = weights  # (F, C)
        self.bias = bias  # (C,)
        self.metadata = metadata

    @property
    def codes(self) -> Sequence[str]:
        return [entry["code"] for entry in self.metadata.codes]

    @property
    def descriptions(self) -> list[str]:
        return [entry["description"] for entry in self.metadata.codes]

    @property
    def thresholds(self) -> np.ndarray:
        return self.metadata.decision_thresholds.per_code

    @property
    def train_code_counts(self) -> list[int]:
        return list(self.metadata.train_code_counts)

    @classmethod
    def fit(
        cls,
        texts: Sequence[str],
        code_sets: Sequence[Sequence[str]],
        config: BaselineConfig,
        metadata: BaselineMetadata,
        progress: Callable[[int, int], None] | None = None,
    ) -> TfidfBaseline:
        """Fit on training texts; `metadata.codes` fixes the column order (every code needs a
        positive)."""
        codes = [entry["code"] for entry in metadata.codes]
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
        return cls(vectorizer, weights, bias, metadata)

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        if len(texts) == 0:
            return np.zeros((0, len(self.metadata.codes)), dtype=np.float32)
        features = self.vectorizer.transform(texts)  # (N, F) sparse
        logits = np.asarray(features @ self.weights) + self.bias  # (N, C)
        return sigmoid(logits)

    def predict(self, texts: Sequence[str], top_k: int | None = None) -> list[list[CodePrediction]]:
        scores = self.scores(texts)
        per_code = self.thresholds
        codes, descriptions = self.codes, self.descriptions
        ranked_notes: list[list[CodePrediction]] = []
        for row in scores:
            order = np.argsort(-row, kind="stable")
            if top_k is not None:
                order = order[:top_k]
            ranked_notes.append(
                [
                    CodePrediction(
                        code=codes[col],
                        description=descriptions[col],
                        score=float(row[col]),
                        rank=rank,
                        above_threshold=bool(row[col] >= per_code[col]),
                    )
                    for rank, col in enumerate(order, start=1)
                ]
            )
        return ranked_notes

    def save(self, directory: Path) -> Path:
        """The pipeline file and bundle.json with its checksum (model.bundle.write_baseline)."""
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=directory) as staging:
            pipeline = Path(staging) / BASELINE_PIPELINE_FILE
            joblib.dump(
                {"vectorizer": self.vectorizer, "weights": self.weights, "bias": self.bias},
                pipeline,
            )
            self.metadata = write_baseline(directory, self.metadata, pipeline)
        return directory

    @classmethod
    def load(cls, directory: Path) -> TfidfBaseline:
        """Read a saved baseline; its pipeline's checksum is verified before it is unpickled."""
        metadata = read_model_metadata(directory)
        if not isinstance(metadata, BaselineMetadata):
            raise ValueError(f"{directory} is not a {BASELINE_KIND} model (bundle.json kind)")
        # joblib unpickles: load only model directories you produced yourself.
        pipeline = joblib.load(directory / BASELINE_PIPELINE_FILE)
        return cls(pipeline["vectorizer"], pipeline["weights"], pipeline["bias"], metadata)
