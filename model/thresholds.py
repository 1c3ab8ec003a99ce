"""The decision thresholds a bundle stores: one global threshold and one per code, all finite.

This is the one reader and writer of bundle.json's `thresholds` record; training tunes the values
(training/thresholds.py), the runtime and evaluation apply them. A code is predicted when its
score is >= its threshold. No torch here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypedDict

import numpy as np
import numpy.typing as npt

DEFAULT_MIN_POSITIVES = 3
RECORD_KEYS = ("global_threshold", "per_code", "min_positives")


class ThresholdsInfo(TypedDict):
    """bundle.json's `thresholds`: finite values, one per code in score-column order."""

    global_threshold: float
    per_code: list[float]
    min_positives: int  # codes with fewer dev positives fall back to the global threshold


@dataclass(frozen=True, eq=False)
class Thresholds:
    """Tuned decision thresholds, stored in the model bundle.

    `per_code` (C,) follows the bundle's code order and is what `apply` uses; `global_threshold`
    is kept for codes added later and for reporting; `min_positives` is how many dev positives a
    code needed to get a threshold of its own.
    """

    global_threshold: float
    per_code: npt.NDArray[np.float64]
    min_positives: int = DEFAULT_MIN_POSITIVES

    def __post_init__(self) -> None:
        per_code = np.asarray(self.per_code, dtype=np.float64)
        if per_code.ndim != 1:
            raise ValueError(f"per_code thresholds must be 1-D; got shape {per_code.shape}")
        if not (math.isfinite(self.global_threshold) and np.isfinite(per_code).all()):
            raise ValueError("thresholds must be finite numbers")
        object.__setattr__(self, "per_code", per_code)

    @classmethod
    def uniform(cls, n_codes: int, value: float = 0.5, min_positives: int = 0) -> Thresholds:
        """The same threshold for every code: what a model holds before tuning."""
        return cls(value, np.full(n_codes, value, dtype=np.float64), min_positives)

    def apply(self, y_score: npt.ArrayLike) -> npt.NDArray[np.bool_]:
        """Decisions (N, C) for scores whose columns follow the same code list."""
        scores = np.asarray(y_score, dtype=np.float64)
        if scores.ndim != 2 or scores.shape[1] != self.per_code.shape[0]:
            raise ValueError(
                f"scores of shape {scores.shape} do not match {self.per_code.shape[0]} thresholds"
            )
        return scores >= self.per_code  # (N, C)

    def to_json(self) -> ThresholdsInfo:
        """A JSON-ready record (plain floats and lists), embedded as is in bundle metadata."""
        return {
            "global_threshold": float(self.global_threshold),
            "per_code": [float(value) for value in self.per_code],
            "min_positives": int(self.min_positives),
        }

    @classmethod
    def from_json(cls, record: Mapping[str, Any] | str) -> Thresholds:
        """Inverse of `to_json`; also accepts that record serialised as a JSON string.

        Python's float repr round-trips exactly, so stored thresholds come back bit-identical.
        A missing key or a value that is not a finite number raises ValueError naming it.
        """
        fields = json.loads(record) if isinstance(record, str) else record
        if not isinstance(fields, Mapping):
            raise ValueError("a thresholds record must be a JSON object")
        missing = set(RECORD_KEYS) - set(fields)
        if missing:
            raise ValueError(f"thresholds record lacks {sorted(missing)}")
        try:
            per_code = np.asarray(fields["per_code"], dtype=np.float64)
        except (TypeError, ValueError) as error:
            raise ValueError(f"thresholds per_code must be numbers ({error})") from None
        return cls(
            global_threshold=float(fields["global_threshold"]),
            per_code=per_code,
            min_positives=int(fields["min_positives"]),
        )

    def __eq__(self, other: object) -> bool:
        # The generated __eq__ would compare arrays elementwise and fail on `bool(...)`.
        if not isinstance(other, Thresholds):
            return NotImplemented
        return (
            self.global_threshold == other.global_threshold
            and self.min_positives == other.min_positives
            and np.array_equal(self.per_code, other.per_code)
        )
