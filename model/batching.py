"""Grouping notes into padded batches: the one helper training and serving share, so the graph
sees notes grouped and padded the same way wherever it runs. No torch here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def length_batches(
    lengths: Sequence[int],
    batch_size: int,
    max_batch_tokens: int | None = None,
    bucket: int | None = None,
) -> list[np.ndarray]:
    """Note indices (int64) per batch: notes of similar length, at most `batch_size` of them,
    and at most `max_batch_tokens` padded tokens (B x T) unless one note alone is longer.

    Notes are taken shortest first (ties in input order), so padding stays small. With `bucket`
    (the decoder's window), a batch holds only notes spanning the same number of windows: the
    decoder pads every note to the batch's windows, so mixing a one-window note with a
    two-window one would double its decoder work. The network masks padding, so results do not
    depend on how notes are grouped; the token budget, not the note count, is what bounds the
    memory of one graph call (activations grow with B x T x codes).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    if bucket is not None and bucket < 1:
        raise ValueError(f"bucket must be positive or None, got {bucket}")
    batches: list[np.ndarray] = []
    current: list[int] = []
    current_bucket = -1
    for index in np.argsort(np.asarray(lengths, dtype=np.int64), kind="stable").tolist():
        width = max(int(lengths[index]), 1)  # ascending: the longest of the group so far
        note_bucket = 0 if bucket is None else -(-width // bucket)
        full = len(current) >= batch_size
        over_budget = max_batch_tokens is not None and (len(current) + 1) * width > max_batch_tokens
        if current and (full or over_budget or note_bucket != current_bucket):
            batches.append(np.asarray(current, dtype=np.int64))
            current = []
        current.append(index)
        current_bucket = note_bucket
    if current:
        batches.append(np.asarray(current, dtype=np.int64))
    return batches


def pad_notes(
    notes: Sequence[Sequence[int] | np.ndarray], pad_id: int
) -> tuple[np.ndarray, np.ndarray]:
    """Right-pad token ids to the longest note: (input_ids int64 (B, T), attention_mask int64
    (B, T)). T is at least 1, so a batch of empty notes still has a valid (all-masked) shape."""
    width = max([len(note) for note in notes] + [1])
    input_ids = np.full((len(notes), width), pad_id, dtype=np.int64)  # (B, T)
    attention_mask = np.zeros((len(notes), width), dtype=np.int64)  # (B, T)
    for row, note in enumerate(notes):
        input_ids[row, : len(note)] = note
        attention_mask[row, : len(note)] = 1
    return input_ids, attention_mask
