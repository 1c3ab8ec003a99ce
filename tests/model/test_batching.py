"""Grouping notes into graph calls: shortest first, at most `batch_size` notes and
`max_batch_tokens` padded tokens, and with `bucket` only notes spanning the same number of
decoder windows in one call."""

from __future__ import annotations

import numpy as np
import pytest

from model.batching import length_batches

LENGTHS = [300, 10, 250, 256, 257, 900, 40, 511, 512, 513, 1, 600]


def test_without_a_bucket_notes_are_grouped_by_count_and_budget() -> None:
    batches = length_batches(LENGTHS, batch_size=4)
    assert [len(batch) for batch in batches] == [4, 4, 4]
    assert np.concatenate(batches).tolist() == np.argsort(LENGTHS, kind="stable").tolist()
    capped = length_batches(LENGTHS, batch_size=16, max_batch_tokens=1024)
    assert all(len(b) * max(LENGTHS[i] for i in b) <= 1024 or len(b) == 1 for b in capped)


def test_a_bucket_keeps_one_window_count_per_batch() -> None:
    batches = length_batches(LENGTHS, batch_size=16, bucket=256)
    windows = [{-(-LENGTHS[i] // 256) for i in batch.tolist()} for batch in batches]
    assert all(len(counts) == 1 for counts in windows)
    assert [counts.pop() for counts in windows] == [1, 2, 3, 4]
    # Every note once, shortest first, as without a bucket.
    assert np.concatenate(batches).tolist() == np.argsort(LENGTHS, kind="stable").tolist()
    with pytest.raises(ValueError, match="bucket must be positive"):
        length_batches(LENGTHS, batch_size=4, bucket=0)
