"""The PLANT network's encoders: the AWD-LSTM (read in chunks with its state carried across), any
local Hugging Face encoder (read in independent chunks), and the AWD-LSTM language model used to
pretrain the former. Each maps (B, T) token ids and mask to (B, T, d) states, zero on padding.
"""

from __future__ import annotations

from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from model.nn.config import EncoderConfig

# Per layer (h, c), each (1, B, hidden of that layer).
LSTMState = list[tuple[Tensor, Tensor]]


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
