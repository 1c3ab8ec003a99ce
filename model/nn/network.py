"""The PLANT network in torch: the label-wise attention decoder with its laat / planted / static
branches, and the classifier that joins it to an encoder (model/nn/encoders.py: AWD-LSTM, any
local Hugging Face encoder, and the LM that pretrains the AWD-LSTM; model/nn/config.py: the
config, the network's only input). Outputs only; losses live in training code.

Decoder design (arXiv 2410.23066, with our deliberate deviations marked):

* Branches. Each active branch scores every (code, position) pair; per code the branch contexts
  are SUMMED and one linear layer per code turns the summed context into a logit.
  - "laat":    score(c, t) = U_c . tanh(W h_t), W (p, d), U (C, p) freshly initialised (LAAT).
  - "planted": score(c, t) = u[id_t] . v_c + b[id_t] + b_c with the L2R token/code factors of the
    ACTUAL token at position t, planted from the L2R model and trained further. The authors' code
    scores the language model's predicted next token instead; scoring the token that is really
    there keeps the attention (and so the highlights) aligned with the text. b_c is constant over
    positions, so it cancels in the softmax; it is kept so a planted model matches the L2R scores.
  - "static":  score(c, t) = MI[id_t, c] from a (V, C) buffer; never trained.
* Inattention: per code, branch and window, padding is set to -inf first, then exactly
  k = min(inattention_k, valid positions) positions are kept and every other score is set to -inf
  before the softmax (the authors' code sets them to 0, so they keep attention mass; we do not
  copy that). Ties never keep more than k: among positions tied at the k-th score the earliest
  are kept, so torch and ONNX Runtime keep the same positions (`torch.topk` and ONNX TopK break
  exact ties differently; see `_inattention`).
* Stateful decoder: T is right-padded to a multiple of `window` and cut into nW windows. Each
  window has its own attention, context and logits (B, nW, C); windows without a valid token are
  masked out; the note's logit is a soft maximum over valid windows,
  beta = softmax_w(logit_w), logit = sum_w beta_w * logit_w (one window: exactly its logit), so a
  code found in an early chunk still carries into the final score. The attention returned is
  sum_w beta_w * mean_branches(alpha_w), truncated back to T: it sums to 1 over the valid positions
  of a non-empty note and is 0 on padding (an all-padding note gets all-zero attention).
* Two-stage decoding (model/nn/shortlist.py): with `PlantConfig.first_stage`, a linear scorer
  over the pooled states proposes a shortlist per note, and the decoder runs for those codes
  only, their parameters gathered by index (`PlantClassifier.shortlisted`, what is exported).
  Training decodes every code and adds the first stage's own loss.
"""

from __future__ import annotations

from typing import NamedTuple, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from model.nn.config import BRANCHES, ENCODER_KINDS, EncoderConfig, PlantConfig, build_config
from model.nn.encoders import (
    AWDLSTMEncoder,
    AWDLSTMLanguageModel,
    LockedDropout,
    TransformerEncoder,
    build_encoder,
    detach_hidden,
)
from model.nn.shortlist import FirstStage, complete_ranking, select_shortlist


def _code_rows(table: Tensor, codes: Tensor | None) -> Tensor:
    """A per-code table (C, n) as it is, or its rows for `codes` (B, S): (B, 1, S, n), ready
    to broadcast over the windows of a note."""
    if codes is None:
        return table  # (C, n)
    return F.embedding(codes, table).unsqueeze(1)  # (B, 1, S, n)


def _as_float_tensor(values: Tensor | np.ndarray, shape: tuple[int, ...], name: str) -> Tensor:
    tensor = torch.as_tensor(values, dtype=torch.float32)
    if tuple(tensor.shape) != shape:
        raise ValueError(f"{name} must have shape {shape}, got {tuple(tensor.shape)}")
    return tensor


# Relative size of the position tie-break in inattention (see `_inattention`): large enough to
# separate equal float32 scores at neighbouring positions (8 ulps), small enough (at most
# 2.5e-4 relative over a 256-token window) not to reorder scores that genuinely differ.
TIE_BREAK = 2.0**-20


def _inattention(scores: Tensor, valid: Tensor, k: int) -> Tensor:
    """Attention over exactly min(k, valid positions) positions per row of `scores` (..., W).

    The k highest valid scores are kept; ties go to the earlier position. The softmax runs over
    those k scores only and is scattered back to (..., W), zero elsewhere: no (..., W) softmax,
    mask or tie-rank tensors are built, which made ONNX Runtime spend most of a note's time in
    Where/CumSum/Softmax. Ties are broken by a position-proportional relative nudge applied
    only for the selection, so `torch.topk` and ONNX TopK (which break exact ties differently)
    see distinct values and keep the same positions; the softmax uses the scores unchanged.
    """
    positions = torch.arange(scores.size(-1), device=scores.device, dtype=scores.dtype)  # (W,)
    with torch.no_grad():
        # Purely relative, so small scores (MI values near 0.01) keep their order; the floor
        # separates exact zeros. Nudged before masking: (-inf).abs() * 0 would be NaN.
        nudge = positions * TIE_BREAK * scores.abs().clamp_min(1e-12)  # (..., W)
        ranked = (scores - nudge).masked_fill(~valid, float("-inf"))  # (..., W)
        top_values, top_index = ranked.topk(k, dim=-1)  # (..., k)
    picked = scores.gather(-1, top_index)  # (..., k), gradients flow to the kept scores
    # Fewer than k valid positions: the surplus picks are padding (-inf) and get no weight.
    picked = picked.masked_fill(top_values == float("-inf"), float("-inf"))
    weights = torch.softmax(picked, dim=-1)  # (..., k)
    return torch.zeros_like(scores).scatter(-1, top_index, weights)  # (..., W)


class LabelAttentionDecoder(nn.Module):
    """Label-wise attention with laat / planted / static branches, inattention and windows
    (see the module docstring).

    forward(states (B, T, d), input_ids (B, T), attention_mask (B, T))
        -> logits (B, C), attention (B, C, T)
    """

    def __init__(self, cfg: PlantConfig, d_model: int) -> None:
        super().__init__()
        n_codes, vocab = cfg.n_codes, cfg.encoder.vocab_size
        self.branches = cfg.branches
        self.window = cfg.window
        self.inattention_k = cfg.inattention_k
        self.pad_id = cfg.pad_id
        if "laat" in self.branches:
            self.laat_proj = nn.Linear(d_model, cfg.laat_dim, bias=False)  # W (p, d)
            self.laat_score = nn.Linear(cfg.laat_dim, n_codes, bias=False)  # U (C, p)
        if "planted" in self.branches:
            self.token_factors = nn.Parameter(torch.randn(vocab, cfg.l2r_dim) * 0.02)  # (V, f)
            self.token_bias = nn.Parameter(torch.zeros(vocab))  # (V,)
            self.code_factors = nn.Parameter(torch.randn(n_codes, cfg.l2r_dim) * 0.02)  # (C, f)
            self.code_bias = nn.Parameter(torch.zeros(n_codes))  # (C,)
        if "static" in self.branches:
            self.register_buffer("mutual_information", torch.zeros(vocab, n_codes))  # (V, C)
        # Small output weights: at the start every logit is close to its bias, which
        # `set_code_priors` sets to the code's training prevalence (see there).
        self.output_weight = nn.Parameter(torch.randn(n_codes, d_model) * 0.01)  # (C, d)
        self.output_bias = nn.Parameter(torch.zeros(n_codes))  # (C,)
        self.first_stage = FirstStage(d_model, n_codes) if cfg.first_stage else None

    def plant(
        self,
        token_factors: Tensor | np.ndarray,
        token_bias: Tensor | np.ndarray,
        code_factors: Tensor | np.ndarray,
        code_bias: Tensor | np.ndarray,
    ) -> None:
        if "planted" not in self.branches:
            raise ValueError("this config has no 'planted' branch to plant into")
        targets = (self.token_factors, self.token_bias, self.code_factors, self.code_bias)
        names = ("token_factors", "token_bias", "code_factors", "code_bias")
        sources = (token_factors, token_bias, code_factors, code_bias)
        with torch.no_grad():
            for target, name, source in zip(targets, names, sources, strict=True):
                target.copy_(_as_float_tensor(source, tuple(target.shape), name))

    def set_code_priors(self, priors: Tensor | np.ndarray) -> None:
        """Output biases = logit of each code's training prevalence (C,), clipped to [1e-4, 1).

        With zero biases every one of thousands of codes starts at probability 0.5, and the
        first epochs go into pushing biases down instead of learning evidence.
        """
        prior = _as_float_tensor(priors, (self.output_bias.shape[0],), "priors").clamp(
            1e-4, 1 - 1e-4
        )
        with torch.no_grad():
            self.output_bias.copy_(torch.log(prior / (1 - prior)))
            if self.first_stage is not None:
                self.first_stage.score.bias.copy_(torch.log(prior / (1 - prior)))

    def set_mutual_information(self, mutual_information: Tensor | np.ndarray) -> None:
        if "static" not in self.branches:
            raise ValueError("this config has no 'static' branch to hold mutual information")
        buffer = cast(Tensor, self.mutual_information)
        buffer.copy_(_as_float_tensor(mutual_information, tuple(buffer.shape), "mi"))

    def _scores(
        self, branch: str, states: Tensor, input_ids: Tensor, codes: Tensor | None
    ) -> Tensor:
        """states (B, nW, W, d), input_ids (B, nW, W) -> scores (B, nW, C, W); with `codes`
        (B, S) only those codes' rows are gathered and scored: (B, nW, S, W)."""
        if branch == "laat":
            hidden = torch.tanh(self.laat_proj(states))  # (B, nW, W, p)
            weight = _code_rows(self.laat_score.weight, codes)  # (C, p) or (B, 1, S, p)
            return torch.matmul(weight, hidden.transpose(-1, -2))
        if branch == "planted":
            # [u_t, b_t, 1] . [v_c, 1, b_c] = u_t . v_c + b_t + b_c in one matmul, so no extra
            # (B, nW, C, W) tensors are made for the two biases.
            ones_t = torch.ones_like(input_ids, dtype=states.dtype).unsqueeze(-1)  # (B, nW, W, 1)
            tokens = torch.cat(
                [
                    F.embedding(input_ids, self.token_factors),  # (B, nW, W, f)
                    F.embedding(input_ids, self.token_bias.unsqueeze(-1)),  # (B, nW, W, 1)
                    ones_t,
                ],
                dim=-1,
            )  # (B, nW, W, f+2)
            ones_c = torch.ones_like(self.code_bias).unsqueeze(-1)  # (C, 1)
            factors = torch.cat([self.code_factors, ones_c, self.code_bias.unsqueeze(-1)], -1)
            factors = _code_rows(factors, codes)  # (C, f+2) or (B, 1, S, f+2)
            return torch.matmul(factors, tokens.transpose(-1, -2))  # (B, nW, C|S, W)
        mutual_information = cast(Tensor, self.mutual_information)  # (V, C)
        if codes is None:
            return F.embedding(input_ids, mutual_information).transpose(-1, -2)  # (B, nW, C, W)
        # MI[id_t, c] for the shortlisted codes only, from the flattened (V * C, 1) table: no
        # (B, nW, W, C) tensor of every code is made.
        n_codes = mutual_information.size(1)
        flat = input_ids.unsqueeze(2) * n_codes + codes[:, None, :, None]  # (B, nW, S, W)
        return F.embedding(flat, mutual_information.reshape(-1, 1)).squeeze(-1)

    def first_stage_logits(self, states: Tensor, attention_mask: Tensor) -> Tensor:
        """The first stage's logits (B, C) from states (B, T, d) and mask (B, T)."""
        if self.first_stage is None:
            raise ValueError("this config has no first stage (PlantConfig.first_stage=False)")
        return cast(Tensor, self.first_stage(states, attention_mask))

    def forward(
        self,
        states: Tensor,
        input_ids: Tensor,
        attention_mask: Tensor,
        codes: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Logits (B, C) and attention (B, C, T) of every code, or with `codes` (B, S) int64 of
        those codes only: (B, S), (B, S, T), column s for code codes[:, s]."""
        batch, total, d_model = states.shape
        window = self.window
        # No Python branching on sizes: the ONNX trace must stay valid for any T.
        pad = (-total) % window
        states = F.pad(states, (0, 0, 0, pad))  # (B, Tp, d)
        input_ids = F.pad(input_ids, (0, pad), value=self.pad_id)  # (B, Tp)
        valid = F.pad(attention_mask, (0, pad), value=0).bool()  # (B, Tp)
        n_windows = states.size(1) // window
        states = states.reshape(batch, n_windows, window, d_model)  # (B, nW, W, d)
        input_ids = input_ids.reshape(batch, n_windows, window)  # (B, nW, W)
        valid = valid.reshape(batch, n_windows, 1, window)  # (B, nW, 1, W), broadcast over codes
        window_valid = valid.any(dim=-1)  # (B, nW, 1)
        # A window with no valid token would softmax over nothing (NaN, also in the backward):
        # let it keep its first position. Its beta is 0 below, so it never shows.
        first = torch.arange(window, device=states.device) == 0  # (W,)
        force = (~window_valid).unsqueeze(-1) & first  # (B, nW, 1, W)
        k = min(self.inattention_k, window)

        alpha_sum: Tensor | None = None  # (B, nW, C, W), summed over branches
        selectable = valid | force  # (B, nW, 1, W)
        for branch in self.branches:
            scores = self._scores(branch, states, input_ids, codes)  # (B, nW, C, W)
            alpha = _inattention(scores, selectable, k)  # (B, nW, C, W)
            del scores
            alpha_sum = alpha if alpha_sum is None else alpha_sum + alpha
        assert alpha_sum is not None
        # The branches' contexts are summed, and sum_b (alpha_b @ H) = (sum_b alpha_b) @ H: one
        # (C, W) x (W, d) product per window instead of one per branch.
        context = torch.matmul(alpha_sum, states)  # (B, nW, C, d)

        if codes is None:
            window_logits = torch.einsum("bncd,cd->bnc", context, self.output_weight)
            window_logits = window_logits + self.output_bias  # (B, nW, C)
        else:
            weight = F.embedding(codes, self.output_weight)  # (B, S, d)
            bias = F.embedding(codes, self.output_bias.unsqueeze(-1)).squeeze(-1)  # (B, S)
            window_logits = torch.einsum("bnsd,bsd->bns", context, weight)
            window_logits = window_logits + bias.unsqueeze(1)  # (B, nW, S)
        # Window 0 always counts, so an all-padding note gets (bias-only) logits, not NaN.
        window_valid = window_valid | (torch.arange(n_windows, device=states.device) == 0)[:, None]
        beta = torch.softmax(window_logits.masked_fill(~window_valid, float("-inf")), dim=1)
        logits = (beta * window_logits).sum(dim=1)  # (B, C)

        # Attention weights: beta per window, averaged over branches; 0 for an all-padding note.
        note_valid = valid.flatten(1).any(dim=1).to(beta.dtype)[:, None, None]  # (B, 1, 1)
        weight = beta * note_valid / len(self.branches)  # (B, nW, C)
        attention = alpha_sum * weight.unsqueeze(-1)  # (B, nW, C, W)
        attention = attention.transpose(1, 2).reshape(batch, -1, n_windows * window)[:, :, :total]
        return logits, attention  # (B, C), (B, C, T)


class ShortlistOutput(NamedTuple):
    """Two-stage decoding of a batch (see `PlantClassifier.shortlisted`)."""

    logits: Tensor  # (B, C): decoded codes' logits, the rest first-stage logits below them
    shortlist: Tensor  # (B, k) int64: the decoded codes, forced first, then by first stage
    decoded: Tensor  # (B, k): the decoded logits, column s for code shortlist[:, s]
    attention: Tensor  # (B, k, T): their attention
    first_stage: Tensor  # (B, C): the first stage's logits


class PlantClassifier(nn.Module):
    """Encoder + label-attention decoder (+ the first stage, model/nn/shortlist.py).

    forward(input_ids (B, T) int64, attention_mask (B, T) int64)
        -> logits (B, C) float32, attention (B, C, T) float32, every code decoded;
    with first_stage=True the first stage's logits (B, C) come third (for its training loss;
    its gradient stops at the encoder states).
    """

    def __init__(self, cfg: PlantConfig) -> None:
        super().__init__()
        self.config = cfg
        self.encoder = build_encoder(cfg.encoder)
        self.decoder = LabelAttentionDecoder(cfg, self.encoder.out_dim)

    def forward(
        self, input_ids: Tensor, attention_mask: Tensor, first_stage: bool = False
    ) -> tuple[Tensor, ...]:
        states = self.encoder.encode(input_ids, attention_mask)  # (B, T, d)
        logits, attention = self.decoder(states, input_ids, attention_mask)
        if not first_stage:
            return logits, attention
        # The first stage reads the states without training them: the encoder and decoder learn
        # exactly as in a network without a first stage, so full decoding is unchanged by it.
        return logits, attention, self.decoder.first_stage_logits(states.detach(), attention_mask)

    def shortlisted(
        self, input_ids: Tensor, attention_mask: Tensor, forced: Tensor, size: Tensor, floor: int
    ) -> ShortlistOutput:
        """Two-stage decoding: the first stage scores every code, the decoder only the shortlist
        (`select_shortlist`: forced (B, C) bool codes, then the best first-stage codes, k of them
        for S = `size` (0-dim int64) and at least `floor`); every other code keeps its first-stage
        logit, below every decoded one. S >= C decodes every code."""
        states = self.encoder.encode(input_ids, attention_mask)  # (B, T, d)
        first = self.decoder.first_stage_logits(states, attention_mask)  # (B, C)
        shortlist = select_shortlist(first, forced, size, floor)  # (B, k)
        decoded, attention = self.decoder(states, input_ids, attention_mask, shortlist)
        logits = complete_ranking(first, shortlist, decoded)  # (B, C)
        return ShortlistOutput(logits, shortlist, decoded, attention, first)

    def plant(
        self,
        token_factors: Tensor | np.ndarray,
        token_bias: Tensor | np.ndarray,
        code_factors: Tensor | np.ndarray,
        code_bias: Tensor | np.ndarray,
    ) -> None:
        """Initialise the planted branch from an L2R model: (V, f), (V,), (C, f), (C,)."""
        self.decoder.plant(token_factors, token_bias, code_factors, code_bias)

    def set_mutual_information(self, mutual_information: Tensor | np.ndarray) -> None:
        """Fill the static branch's (V, C) buffer; it is never trained."""
        self.decoder.set_mutual_information(mutual_information)

    def set_code_priors(self, priors: Tensor | np.ndarray) -> None:
        """Start each code's logit at its training prevalence (C,)."""
        self.decoder.set_code_priors(priors)


__all__ = [
    "BRANCHES",
    "ENCODER_KINDS",
    "AWDLSTMEncoder",
    "AWDLSTMLanguageModel",
    "EncoderConfig",
    "LabelAttentionDecoder",
    "LockedDropout",
    "PlantClassifier",
    "PlantConfig",
    "ShortlistOutput",
    "TransformerEncoder",
    "build_config",
    "build_encoder",
    "detach_hidden",
]
