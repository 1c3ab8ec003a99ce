"""The thresholds record a bundle stores: exact JSON round trip, inclusive decisions, and a
clear error for a record that is incomplete or not finite (the runtime never guesses a value)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from model.thresholds import Thresholds


def test_thresholds_json_round_trip() -> None:
    thresholds = Thresholds(0.35, np.array([0.61, 0.35, 0.1 + 0.2]), min_positives=3)
    record = thresholds.to_json()
    assert record == {
        "global_threshold": 0.35,
        "per_code": [0.61, 0.35, 0.1 + 0.2],
        "min_positives": 3,
    }
    assert all(type(value) is float for value in record["per_code"])
    # Through a JSON file (as inside bundle metadata) and from a JSON string: bit-identical.
    assert Thresholds.from_json(json.loads(json.dumps(record))) == thresholds
    assert Thresholds.from_json(json.dumps(record)) == thresholds
    assert Thresholds.from_json(record).per_code[2] == 0.1 + 0.2


def test_thresholds_apply_per_code() -> None:
    thresholds = Thresholds(0.5, np.array([0.2, 0.9]))
    decisions = thresholds.apply(np.array([[0.2, 0.8], [0.1, 0.9]]))
    # >= is inclusive: 0.2 at 0.2 and 0.9 at 0.9 are predicted.
    assert decisions.tolist() == [[True, False], [False, True]]


def test_thresholds_reject_bad_records() -> None:
    with pytest.raises(ValueError, match="lacks"):
        Thresholds.from_json({"global_threshold": 0.5, "per_code": [0.5]})
    with pytest.raises(ValueError, match="finite"):
        Thresholds(0.5, np.array([np.nan]))
    with pytest.raises(ValueError, match="1-D"):
        Thresholds(0.5, np.zeros((2, 2)))
    # null in JSON (a per-code value never tuned) is not a number: an error, not a fallback.
    with pytest.raises(ValueError, match="finite"):
        Thresholds.from_json({"global_threshold": 0.5, "per_code": [0.5, None], "min_positives": 3})


def test_uniform_thresholds_hold_one_value() -> None:
    assert Thresholds.uniform(3).to_json() == {
        "global_threshold": 0.5,
        "per_code": [0.5, 0.5, 0.5],
        "min_positives": 0,
    }
