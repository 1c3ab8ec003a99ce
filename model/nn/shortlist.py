"""Two-stage decoding: the cheap first stage (a linear scorer over the pooled encoder states),
the shortlist it proposes with the codes the runtime forces in, and the complete ranking that
places every code outside the shortlist below every decoded one. The decoder itself
(model/nn/network.py) decodes either every code or a shortlist's codes gathered by index.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import Tensor, nn

# Relative size of the code-index tie-break in the shortlist selection, applied in float64:
# at most 74k codes * 2**-48 = 2**-31.8 relative, below float32's resolution (2**-24), so it
# never reorders first-stage scores that differ; it separates exact float32 ties, so
# `torch.topk` and ONNX TopK (which break exact ties differently) pick the same codes.
SHORTLIST_TIE_BREAK = 2.0**-48


def pool_states(states: Tensor, attention_mask: Tensor) -> Tensor:
    """Masked mean and max of the encoder states: states (B, T, d), mask (B, T) -> (B, 2d).

    Padding never counts; an all-padding note pools to zeros (no NaN, no -inf)."""
    valid = attention_mask.bool().unsqueeze(-1)  # (B, T, 1)
    weights = valid.to(states.dtype)  # (B, T, 1)
    count = weights.sum(dim=1).clamp_min(1.0)  # (B, 1)
    mean = (states * weights).sum(dim=1) / count  # (B, d)
    highest = states.masked_fill(~valid, float("-inf")).amax(dim=1)  # (B, d)
    any_valid = valid.any(dim=1)  # (B, 1)
    highest = torch.where(any_valid, highest, torch.zeros_like(highest))  # (B, d)
    return torch.cat([mean, highest], dim=-1)  # (B, 2d)


class FirstStage(nn.Module):
    """Linear(2d, C) over `pool_states`: one score per code from the whole note, trained jointly
    with its own BCE term (training/finetune.py).

    forward(states (B, T, d), attention_mask (B, T)) -> first-stage logits (B, C)
    """

    def __init__(self, d_model: int, n_codes: int) -> None:
        super().__init__()
        self.score = nn.Linear(2 * d_model, n_codes)  # (C, 2d), (C,)

    def forward(self, states: Tensor, attention_mask: Tensor) -> Tensor:
        return self.score(pool_states(states, attention_mask))  # (B, C)


def select_shortlist(first: Tensor, forced: Tensor, size: Tensor, floor: int) -> Tensor:
    """The codes to decode per note: first (B, C) logits, forced (B, C) bool, size a 0-dim
    int64 S -> code indices (B, k) int64, forced codes first, then by first-stage score.

    k = min(C, max(S, floor, most forced codes of a note)): every forced code is decoded, and at
    least `floor` (the graph's top K) codes, so the top codes all have attention rows. k is
    computed in the graph, so one exported graph serves any S.
    """
    n_codes = first.size(1)
    most_forced = forced.sum(dim=1).max()  # 0-dim int64
    k = torch.maximum(size.to(torch.int64), most_forced)
    k = torch.maximum(k, torch.as_tensor(floor, dtype=torch.int64))
    k = torch.minimum(k, torch.as_tensor(n_codes, dtype=torch.int64))  # 0-dim
    with torch.no_grad():
        key = first.double()  # (B, C)
        # Forced codes above all others, their own order kept: shift them by the score range.
        spread = key.amax(dim=1, keepdim=True) - key.amin(dim=1, keepdim=True) + 1.0  # (B, 1)
        key = torch.where(forced, key + spread, key)
        codes = torch.arange(n_codes, device=first.device, dtype=key.dtype)  # (C,)
        key = key - codes * SHORTLIST_TIE_BREAK * key.abs().clamp_min(1e-12)  # (B, C)
        # A 0-dim tensor k: the trace records it as a graph value (ONNX TopK takes k as an
        # input), so the exported graph follows shortlist_size instead of the example's S.
        return key.topk(cast(int, k), dim=1).indices  # (B, k)


def complete_ranking(first: Tensor, shortlist: Tensor, decoded: Tensor) -> Tensor:
    """Logits for every code: the decoded logits (B, k) at their codes `shortlist` (B, k), and
    every other code its first-stage logit (B, C) shifted below the lowest decoded logit, so
    the ranking stays complete and each note's order outside the shortlist is the first stage's.
    """
    top = first.amax(dim=1, keepdim=True)  # (B, 1)
    lowest = decoded.amin(dim=1, keepdim=True)  # (B, 1)
    below = first - top + lowest - 1.0  # (B, C): its maximum is lowest - 1
    return below.scatter(1, shortlist, decoded)  # (B, C)
