"""What the L2R model learns to rank per code: the coders' evidence first, mutual information
for the rest (PLANT plants attention from this ranking).

Where a corpus has evidence spans (CodiEsp X), a token that lies inside a code's gold spans is
relevant to that code however its MI ranks: it outranks every token without evidence, and among
evidence tokens the ones coders marked more often rank higher. Without spans, MI alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from model.tokenizer import NoteTokenizer
from training.corpora.base import Document


def evidence_counts(
    documents: Sequence[Document],
    tokenizer: NoteTokenizer,
    codes: Sequence[str],
    max_tokens: int | None = None,
) -> np.ndarray:
    """(V, C) float32: in how many notes each token lies inside one of the code's spans."""
    column = {code: index for index, code in enumerate(codes)}
    counts = np.zeros((tokenizer.vocab_size, len(codes)), dtype=np.float32)  # (V, C)
    notes = tokenizer.encode_batch([document.text for document in documents], max_tokens=max_tokens)
    for document, note in zip(documents, notes, strict=True):
        marked: set[tuple[int, int]] = set()
        for code, inside in span_token_masks(document, note.offsets, column).items():
            marked.update((int(token), code) for token in note.ids[inside])
        for token, code in marked:
            counts[token, code] += 1.0
    return counts


def span_token_masks(
    document: Document, offsets: np.ndarray, column: Mapping[str, int]
) -> dict[int, np.ndarray]:
    """Per code column, which tokens (bool (T,), from the token offsets (T, 2)) overlap one of the
    code's evidence spans in `document`; codes outside `column` are skipped, and so are empty
    tokens."""
    starts, ends = offsets[:, 0], offsets[:, 1]  # (T,)
    masks: dict[int, np.ndarray] = {}
    for span in document.spans:
        if span.code not in column:
            continue
        inside = (starts < span.end) & (ends > span.start) & (ends > starts)  # (T,)
        code = column[span.code]
        masks[code] = masks[code] | inside if code in masks else inside
    return masks


def evidence_relevance(mutual_information: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(V, C) relevance for L2R grading: evidence tokens above all others, then MI.

    An evidence token scores (1 + its evidence count) times the largest MI of all, plus its MI,
    so the order is: evidence count, then MI; tokens without evidence keep their MI."""
    if counts.shape != mutual_information.shape:
        raise ValueError(
            f"evidence counts {counts.shape} and mutual information {mutual_information.shape} "
            "must both be (vocabulary, codes)"
        )
    ceiling = float(max(mutual_information.max(initial=0.0), 1e-6))
    boost = np.where(counts > 0, (1.0 + counts) * ceiling, 0.0)
    return (mutual_information + boost).astype(np.float32)
