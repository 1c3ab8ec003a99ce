"""The attention auxiliary loss: while fine-tuning, each gold code should put its attention where
the coders marked the evidence for it (CodiEsp X spans), not only where mutual information or the
L2R planting points.

For a note and a gold code with spans, the loss is -log of the attention mass the code puts on
the tokens inside its spans (the network's attention sums to 1 over a note's valid tokens, so the
mass is in [0, 1]). Pairs without spans (codes coders did not mark, corpora without spans) add
nothing; the term is averaged over the pairs of a batch and weighted by the preset.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from model.tokenizer import NoteTokenizer
from training.corpora.base import Document
from training.planting import span_token_masks

# Keeps -log finite when a code puts no mass at all on its span (inattention keeps k positions).
MASS_FLOOR = 1e-4


@dataclass(frozen=True)
class SpanTokens:
    """The tokens inside one gold code's evidence in one note."""

    code: int  # column in the network's label space
    tokens: np.ndarray  # (S,) int64, positions in the note's (truncated) token sequence


def span_token_targets(
    documents: Sequence[Document],
    tokenizer: NoteTokenizer,
    codes: Sequence[str],
    max_tokens: int,
) -> list[list[SpanTokens]]:
    """Per note (in `documents` order), each labelled code's tokens inside its evidence spans.

    A token counts when its characters overlap a span part. Spans of codes outside the label
    space, and spans that fall past `max_tokens`, are skipped."""
    column = {code: index for index, code in enumerate(codes)}
    notes = tokenizer.encode_batch([document.text for document in documents], max_tokens=max_tokens)
    targets: list[list[SpanTokens]] = []
    for document, note in zip(documents, notes, strict=True):
        masks = span_token_masks(document, note.offsets, column)
        targets.append(
            [
                SpanTokens(code, np.flatnonzero(inside).astype(np.int64))
                for code, inside in sorted(masks.items())
                if inside.any()
            ]
        )
    return targets


def targets_digest(targets: Sequence[Sequence[SpanTokens]]) -> str:
    """A short hash of the targets, for the stage cache key."""
    digest = hashlib.sha256()
    for note, items in enumerate(targets):
        for item in items:
            digest.update(f"{note}:{item.code}:".encode())
            digest.update(item.tokens.tobytes())
    return digest.hexdigest()[:16]


def span_attention_loss(
    attention: torch.Tensor, batch_targets: Sequence[Sequence[SpanTokens]]
) -> torch.Tensor | None:
    """Mean over (note, code) pairs of -log(attention mass inside the code's spans).

    attention (B, C, T) is the network's attention (rows sum to 1 over valid tokens); row b of
    it belongs to `batch_targets[b]`. None when no note of the batch has a span."""
    rows, codes, tokens, pairs = [], [], [], []
    pair = 0
    for row, items in enumerate(batch_targets):
        for item in items:
            kept = item.tokens[item.tokens < attention.size(2)]
            if not len(kept):
                continue
            rows.append(np.full(len(kept), row))
            codes.append(np.full(len(kept), item.code))
            tokens.append(kept)
            pairs.append(np.full(len(kept), pair))
            pair += 1
    if not pair:
        return None
    device = attention.device
    index = [torch.from_numpy(np.concatenate(part)).to(device) for part in (rows, codes, tokens)]
    owner = torch.from_numpy(np.concatenate(pairs)).to(device)  # (P_tokens,) pair of each token
    picked = attention[index[0], index[1], index[2]]  # (P_tokens,)
    mass = torch.zeros(pair, dtype=attention.dtype, device=device).index_add(0, owner, picked)
    return -torch.log(mass.clamp_min(MASS_FLOOR)).mean()
