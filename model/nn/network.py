"""The PLANT network in torch: encoders (AWD-LSTM, or any local Hugging Face encoder), the
label-wise attention decoder with its laat / planted / static branches, the classifier that joins
them, and the AWD-LSTM language model used to pretrain the encoder. Outputs only; losses live in
training code.

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
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, cast

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

ENCODER_KINDS = ("awd_lstm", "transformer")
BRANCHES = ("laat", "planted", "static")

# Per layer (h, c), each (1, B, hidden of that layer).
LSTMState = list[tuple[Tensor, Tensor]]


@dataclass
class EncoderConfig:
    kind: str = "awd_lstm"  # "awd_lstm" | "transformer"
    vocab_size: int = 8000
    emb_dim: int = 128
    hidden_dim: int = 256
    n_layers: int = 2
    embedding_dropout: float = 0.05  # whole word rows of the embedding matrix
    input_dropout: float = 0.25  # locked (same mask at every position) on the embeddings
    hidden_dropout: float = 0.15  # locked, between LSTM layers
    weight_dropout: float = 0.2  # DropConnect on hidden-to-hidden weights
    output_dropout: float = 0.1  # locked, on the last layer's states
    chunk_len: int = 128  # tokens read per chunk; the hidden state is carried across chunks
    hf_path: str = ""  # local Hugging Face model directory (transformer only)
    pad_id: int = 0

    def __post_init__(self) -> None:
        if self.kind not in ENCODER_KINDS:
            raise ValueError(f"encoder kind must be one of {ENCODER_KINDS}, got {self.kind!r}")
        if self.vocab_size < 1 or self.emb_dim < 1 or self.hidden_dim < 1 or self.n_layers < 1:
            raise ValueError("vocab_size, emb_dim, hidden_dim and n_layers must be positive")
        for name in (
            "embedding_dropout",
            "input_dropout",
            "hidden_dropout",
            "weight_dropout",
            "output_dropout",
        ):
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {getattr(self, name)}")
        if self.chunk_len < 1:
            raise ValueError(f"chunk_len must be positive, got {self.chunk_len}")
        if self.kind == "transformer" and not self.hf_path:
            raise ValueError("a transformer encoder needs hf_path (a local model directory)")


@dataclass
class PlantConfig:
    encoder: EncoderConfig
    n_codes: int
    l2r_dim: int = 64  # f: L2R factor size
    laat_dim: int = 128  # p: LAAT projection size
    inattention_k: int = 32  # positions kept per code, branch and window
    window: int = 256  # attention window in tokens (stateful decoder)
    branches: tuple[str, ...] = ("laat", "planted", "static")
    top_k_export: int = 50
    pad_id: int = 0

    def __post_init__(self) -> None:
        self.branches = tuple(self.branches)
        if not self.branches or len(set(self.branches)) != len(self.branches):
            raise ValueError(f"branches must be non-empty and distinct, got {self.branches}")
        unknown = [name for name in self.branches if name not in BRANCHES]
        if unknown:
            raise ValueError(f"unknown branches {unknown}; choose from {BRANCHES}")
        for name in ("n_codes", "l2r_dim", "laat_dim", "inattention_k", "window", "top_k_export"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.pad_id != self.encoder.pad_id:
            raise ValueError(
                f"pad_id {self.pad_id} differs from encoder.pad_id {self.encoder.pad_id}"
            )

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["branches"] = list(self.branches)  # JSON has no tuples
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> PlantConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"unknown PlantConfig keys: {unknown}")
        encoder_values = dict(values["encoder"])
        encoder_known = {f.name for f in fields(EncoderConfig)}
        unknown = sorted(set(encoder_values) - encoder_known)
        if unknown:
            raise ValueError(f"unknown EncoderConfig keys: {unknown}")
        rest = {k: v for k, v in values.items() if k != "encoder"}
        if "branches" in rest:
            rest["branches"] = tuple(rest["branches"])
        return cls(encoder=EncoderConfig(**encoder_values), **rest)


def build_config(vocab_size: int, n_codes: int, **fields_: Any) -> PlantConfig:
    """A PlantConfig from flat fields: each names an EncoderConfig or PlantConfig field (`pad_id`
    sets both); the rest keep their defaults. Training presets (training/presets.py) are such
    field sets."""
    values = {**fields_, "vocab_size": vocab_size, "n_codes": n_codes}
    encoder_names = {f.name for f in fields(EncoderConfig)}
    plant_names = {f.name for f in fields(PlantConfig)} - {"encoder"}
    unknown = sorted(set(values) - encoder_names - plant_names)
    if unknown:
        raise ValueError(f"unknown config fields: {unknown}")
    encoder = EncoderConfig(**{k: v for k, v in values.items() if k in encoder_names})
    return PlantConfig(encoder=encoder, **{k: v for k, v in values.items() if k in plant_names})


class LockedDropout(nn.Module):
    """Variational dropout: one mask per sequence, shared by every position."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: Tensor) -> Tensor:  # (B, T, d) -> (B, T, d)
        if not self.training or self.p == 0.0:
            return x
        mask = x.new_empty(x.size(0), 1, x.size(2)).bernoulli_(1.0 - self.p) / (1.0 - self.p)
        return x * mask


def detach_hidden(hidden: LSTMState) -> LSTMState:
    """Cut the graph between LM batches (truncated back-propagation through time)."""
    return [(h.detach(), c.detach()) for h, c in hidden]


class AWDLSTMEncoder(nn.Module):
    """AWD-LSTM (Merity et al. 2017): a stack of unidirectional single-layer `nn.LSTM`s.

    Weight drop: during training only, each layer runs through `torch.func.functional_call` with
    a DropConnect copy of its `weight_hh_l0` (one mask per forward, i.e. per chunk). The LSTM
    keeps its ordinary parameters, so in eval mode (and in `torch.onnx.export`) it is a plain
    `nn.LSTM` and state dicts have the standard keys; no `_raw` parameter tricks.
    """

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        self.config = cfg
        self.embedding = nn.Embedding(cfg.vocab_size, cfg.emb_dim, padding_idx=cfg.pad_id)
        nn.init.uniform_(self.embedding.weight, -0.1, 0.1)
        with torch.no_grad():
            self.embedding.weight[cfg.pad_id].zero_()
        sizes = [cfg.emb_dim] + [cfg.hidden_dim] * (cfg.n_layers - 1) + [cfg.emb_dim]
        # The last layer outputs emb_dim so the LM decoder can tie its weights to the embedding.
        self.layers = nn.ModuleList(
            nn.LSTM(sizes[i], sizes[i + 1], batch_first=True) for i in range(cfg.n_layers)
        )
        self.input_dropout = LockedDropout(cfg.input_dropout)
        self.hidden_dropout = LockedDropout(cfg.hidden_dropout)
        self.output_dropout = LockedDropout(cfg.output_dropout)
        self.out_dim = cfg.emb_dim

    def _embed(self, input_ids: Tensor) -> Tensor:  # (B, T) -> (B, T, E)
        weight = self.embedding.weight  # (V, E)
        p = self.config.embedding_dropout
        if self.training and p > 0.0:
            # Embedding dropout drops whole words: the same rows vanish wherever the word occurs.
            keep = weight.new_empty(weight.size(0), 1).bernoulli_(1.0 - p) / (1.0 - p)
            weight = weight * keep
        return F.embedding(input_ids, weight, padding_idx=self.embedding.padding_idx)

    def _run_layer(
        self, lstm: nn.Module, x: Tensor, state: tuple[Tensor, Tensor] | None
    ) -> tuple[Tensor, tuple[Tensor, Tensor]]:
        p = self.config.weight_dropout
        if self.training and p > 0.0:
            weight = cast(Tensor, lstm.weight_hh_l0)  # (4H, H)
            dropped = F.dropout(weight, p, training=True)
            out = functional_call(lstm, {"weight_hh_l0": dropped}, (x, state))
        else:
            out = lstm(x, state)
        return cast(tuple[Tensor, tuple[Tensor, Tensor]], out)

    def forward(
        self, input_ids: Tensor, hidden: LSTMState | None = None
    ) -> tuple[Tensor, LSTMState]:
        x = self.input_dropout(self._embed(input_ids))  # (B, T, E)
        new_hidden: LSTMState = []
        for i, lstm in enumerate(self.layers):
            x, state = self._run_layer(lstm, x, None if hidden is None else hidden[i])
            new_hidden.append(state)  # (h, c): (1, B, d_i) each
            if i < len(self.layers) - 1:
                x = self.hidden_dropout(x)  # (B, T, H)
        return self.output_dropout(x), new_hidden  # (B, T, E)

    def encode(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """Read (B, T) notes in chunks of `chunk_len`, carrying the hidden state (with its
        gradient) from chunk to chunk; returns (B, T, E) states, zero on padding.

        With right padding a unidirectional LSTM's state at a valid position depends only on the
        tokens before it, so padding never changes the valid states. In eval mode reading in
        chunks equals one full pass; the ONNX export therefore traces the single pass (a Python
        loop over chunks would be unrolled for the example length).
        """
        total = input_ids.size(1)
        if torch.onnx.is_in_onnx_export() or total <= self.config.chunk_len:
            states, _ = self(input_ids)  # (B, T, E)
        else:
            pieces: list[Tensor] = []
            hidden: LSTMState | None = None
            for start in range(0, total, self.config.chunk_len):
                chunk = input_ids[:, start : start + self.config.chunk_len]  # (B, L)
                piece, hidden = self(chunk, hidden)  # (B, L, E)
                pieces.append(piece)
            states = torch.cat(pieces, dim=1)  # (B, T, E)
        return states * attention_mask.unsqueeze(-1).to(states.dtype)


def position_limit(hf_config: Any) -> int:
    """Longest chunk the backbone's position table allows."""
    limit = int(getattr(hf_config, "max_position_embeddings", 0) or 0)
    if limit <= 0:
        raise ValueError("the Hugging Face config has no max_position_embeddings")
    # RoBERTa-style models number positions from pad_token_id + 1.
    if getattr(hf_config, "model_type", "") in {"roberta", "xlm-roberta", "camembert"}:
        limit -= int(getattr(hf_config, "pad_token_id", 1) or 0) + 1
    return limit


class TransformerEncoder(nn.Module):
    """Any local Hugging Face encoder, reading long notes in independent chunks of `chunk_len`.

    input_ids must come from the backbone's own tokenizer, so `vocab_size` has to cover the
    backbone's vocabulary (the planted and static branches look ids up in (V, .) tables).
    """

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        # Imported here: transformers is slow to import and only this encoder needs it.
        from transformers import AutoModel

        self.config = cfg
        # local_files_only: nothing is ever downloaded at run time.
        self.backbone = AutoModel.from_pretrained(cfg.hf_path, local_files_only=True)
        hf_config = self.backbone.config
        limit = position_limit(hf_config)
        if cfg.chunk_len > limit:
            raise ValueError(
                f"chunk_len {cfg.chunk_len} exceeds the {limit} positions of {cfg.hf_path}; "
                f"set chunk_len <= {limit}"
            )
        backbone_vocab = int(hf_config.vocab_size)
        if cfg.vocab_size < backbone_vocab:
            raise ValueError(
                f"vocab_size {cfg.vocab_size} is smaller than the backbone's {backbone_vocab}; "
                f"set vocab_size={backbone_vocab}"
            )
        self.out_dim = int(hf_config.hidden_size)
        # Exposed for staged unfreezing, like AWDLSTMEncoder.layers.
        inner = getattr(self.backbone, "encoder", None)
        layers = getattr(inner, "layer", None) if inner is not None else None
        self.layers = layers if isinstance(layers, nn.ModuleList) else nn.ModuleList()

    def encode(self, input_ids: Tensor, attention_mask: Tensor) -> Tensor:
        """(B, T) ids and mask -> (B, T, d) states, zero on padding."""
        batch, total = input_ids.shape
        length = self.config.chunk_len
        pad = (-total) % length
        ids = F.pad(input_ids, (0, pad), value=self.config.pad_id)  # (B, Tp)
        mask = F.pad(attention_mask, (0, pad), value=0)  # (B, Tp)
        n_chunks = ids.size(1) // length
        ids = ids.reshape(batch * n_chunks, length)  # (B*n, L)
        mask = mask.reshape(batch * n_chunks, length)  # (B*n, L)
        # A fully padded chunk would give attention rows with no visible key (NaN in some
        # kernels): let it see its first position; its states are zeroed below anyway.
        empty = ~mask.bool().any(dim=1, keepdim=True)  # (B*n, 1)
        first = torch.arange(length, device=mask.device) == 0  # (L,)
        run_mask = (mask.bool() | (empty & first)).to(mask.dtype)  # (B*n, L)
        out = self.backbone(input_ids=ids, attention_mask=run_mask).last_hidden_state
        states = out.reshape(batch, n_chunks * length, self.out_dim)[:, :total]  # (B, T, d)
        return states * attention_mask.unsqueeze(-1).to(states.dtype)


Encoder = AWDLSTMEncoder | TransformerEncoder


def build_encoder(cfg: EncoderConfig) -> Encoder:
    return AWDLSTMEncoder(cfg) if cfg.kind == "awd_lstm" else TransformerEncoder(cfg)


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

    def set_mutual_information(self, mutual_information: Tensor | np.ndarray) -> None:
        if "static" not in self.branches:
            raise ValueError("this config has no 'static' branch to hold mutual information")
        buffer = cast(Tensor, self.mutual_information)
        buffer.copy_(_as_float_tensor(mutual_information, tuple(buffer.shape), "mi"))

    def _scores(self, branch: str, states: Tensor, input_ids: Tensor) -> Tensor:
        """states (B, nW, W, d), input_ids (B, nW, W) -> scores (B, nW, C, W)."""
        if branch == "laat":
            hidden = torch.tanh(self.laat_proj(states))  # (B, nW, W, p)
            return torch.matmul(self.laat_score.weight, hidden.transpose(-1, -2))
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
            codes = torch.cat([self.code_factors, ones_c, self.code_bias.unsqueeze(-1)], -1)
            return torch.matmul(codes, tokens.transpose(-1, -2))  # (C, f+2) @ -> (B, nW, C, W)
        mutual_information = cast(Tensor, self.mutual_information)  # (V, C)
        return F.embedding(input_ids, mutual_information).transpose(-1, -2)  # (B, nW, C, W)

    def forward(
        self, states: Tensor, input_ids: Tensor, attention_mask: Tensor
    ) -> tuple[Tensor, Tensor]:
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
            scores = self._scores(branch, states, input_ids)  # (B, nW, C, W)
            alpha = _inattention(scores, selectable, k)  # (B, nW, C, W)
            del scores
            alpha_sum = alpha if alpha_sum is None else alpha_sum + alpha
        assert alpha_sum is not None
        # The branches' contexts are summed, and sum_b (alpha_b @ H) = (sum_b alpha_b) @ H: one
        # (C, W) x (W, d) product per window instead of one per branch.
        context = torch.matmul(alpha_sum, states)  # (B, nW, C, d)

        window_logits = torch.einsum("bncd,cd->bnc", context, self.output_weight)
        window_logits = window_logits + self.output_bias  # (B, nW, C)
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


class PlantClassifier(nn.Module):
    """Encoder + label-attention decoder.

    forward(input_ids (B, T) int64, attention_mask (B, T) int64)
        -> logits (B, C) float32, attention (B, C, T) float32
    """

    def __init__(self, cfg: PlantConfig) -> None:
        super().__init__()
        self.config = cfg
        self.encoder = build_encoder(cfg.encoder)
        self.decoder = LabelAttentionDecoder(cfg, self.encoder.out_dim)

    def forward(self, input_ids: Tensor, attention_mask: Tensor) -> tuple[Tensor, Tensor]:
        states = self.encoder.encode(input_ids, attention_mask)  # (B, T, d)
        return self.decoder(states, input_ids, attention_mask)

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


class AWDLSTMLanguageModel(nn.Module):
    """AWD-LSTM encoder + decoder tied to the embedding, for next-token pretraining.

    forward(input_ids (B, T), hidden=None) -> logits (B, T, V), hidden
    """

    def __init__(self, cfg: EncoderConfig) -> None:
        super().__init__()
        if cfg.kind != "awd_lstm":
            raise ValueError("the language model is an AWD-LSTM; got encoder kind " + cfg.kind)
        self.config = cfg
        self.encoder = AWDLSTMEncoder(cfg)
        self.decoder = nn.Linear(cfg.emb_dim, cfg.vocab_size)
        self.decoder.weight = self.encoder.embedding.weight  # weight tying

    def forward(
        self, input_ids: Tensor, hidden: LSTMState | None = None
    ) -> tuple[Tensor, LSTMState]:
        states, hidden = self.encoder(input_ids, hidden)  # (B, T, E)
        return self.decoder(states), hidden  # (B, T, V)


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
    "TransformerEncoder",
    "build_config",
    "build_encoder",
    "detach_hidden",
]
