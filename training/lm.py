"""Next-token language-model pretraining of the AWD-LSTM encoder on unlabelled notes.

Notes are concatenated into one token stream (separated by `<eos>`), cut into `batch_size`
parallel streams and read with truncated back-propagation through time: the hidden state is
carried across windows of `bptt` tokens and detached between them.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from model.nn.encoders import AWDLSTMLanguageModel, detach_hidden
from training.distributed import SINGLE, DistContext, wrap
from training.progress import Notify, ProgressEvent


@dataclass
class LMConfig:
    epochs: int = 1
    bptt: int = 70
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-6
    clip: float = 0.25
    max_train_tokens: int | None = None  # a budget for the demo preset; None reads everything
    valid_fraction: float = 0.03


@dataclass
class LMReport:
    train_tokens: int
    valid_tokens: int
    train_loss: float
    valid_loss: float
    valid_perplexity: float
    seconds: float


def token_stream(notes: Sequence[np.ndarray], eos_id: int) -> np.ndarray:
    """All notes end to end, each followed by `<eos>`: int64 (L,)."""
    pieces: list[np.ndarray] = []
    eos = np.array([eos_id], dtype=np.int64)
    for note in notes:
        pieces.extend((np.asarray(note, dtype=np.int64), eos))
    return np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int64)


def batchify(stream: np.ndarray, batch_size: int) -> torch.Tensor:
    """(batch_size, L // batch_size): row b holds the b-th contiguous slice of the stream."""
    length = len(stream) // batch_size
    if length < 2:
        raise ValueError(
            f"language-model stream of {len(stream)} tokens is too short for batch {batch_size}"
        )
    return torch.from_numpy(stream[: length * batch_size].reshape(batch_size, length).copy())


def _windows(batches: torch.Tensor, bptt: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    out = []
    for start in range(0, batches.shape[1] - 1, bptt):
        end = min(start + bptt, batches.shape[1] - 1)
        out.append((batches[:, start:end], batches[:, start + 1 : end + 1]))  # (B, w), (B, w)
    return out


@torch.no_grad()
def evaluate_lm(model: AWDLSTMLanguageModel, batches: torch.Tensor, bptt: int) -> float:
    """Mean next-token cross-entropy (nats) over a batchified stream."""
    model.eval()
    hidden = None
    total, count = 0.0, 0
    for inputs, targets in _windows(batches, bptt):
        logits, hidden = model(inputs, hidden)  # (B, w, V)
        total += F.cross_entropy(logits.flatten(0, 1), targets.flatten(), reduction="sum").item()
        count += targets.numel()
    return total / max(count, 1)


def pretrain_language_model(
    model: AWDLSTMLanguageModel,
    notes: Sequence[np.ndarray],
    eos_id: int,
    config: LMConfig,
    progress: Notify | None = None,
    ctx: DistContext = SINGLE,
    *,
    seed: int = 13,
) -> LMReport:
    """Train `model` in place; a random `valid_fraction` of the notes is held out for perplexity.

    Under torchrun each rank reads its own rows of the batchified stream (rank r: rows r, r + W,
    ...), so together the ranks read the stream once per epoch.
    """
    started = time.perf_counter()
    torch.manual_seed(seed)
    order = np.random.default_rng(seed).permutation(len(notes))
    n_valid = max(1, int(len(notes) * config.valid_fraction))
    valid_notes = [notes[i] for i in order[:n_valid]]
    train_notes = [notes[i] for i in order[n_valid:]]
    train_stream = token_stream(train_notes, eos_id)
    if config.max_train_tokens is not None:
        train_stream = train_stream[: config.max_train_tokens]
    train_batches = batchify(train_stream, config.batch_size)
    if ctx.enabled:
        rows = config.batch_size - config.batch_size % ctx.world_size
        train_batches = train_batches[ctx.rank : rows : ctx.world_size]
    train_batches = train_batches.to(ctx.device)
    valid_batches = batchify(token_stream(valid_notes, eos_id), min(config.batch_size, 8))
    valid_batches = valid_batches.to(ctx.device)
    trained = wrap(model, ctx)

    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay, betas=(0.7, 0.99)
    )
    windows = _windows(train_batches, config.bptt)
    total_steps = config.epochs * len(windows)
    # One-cycle schedule: warm up, then anneal; the ULMFiT recipe for short LM budgets.
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=config.lr, total_steps=max(total_steps, 1), pct_start=0.25
    )
    step = 0
    running = math.nan
    for _ in range(config.epochs):
        trained.train()
        hidden = None
        for inputs, targets in windows:
            logits, hidden = trained(inputs, hidden)  # (B, w, V)
            hidden = detach_hidden(hidden)
            loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.clip)
            optimizer.step()
            scheduler.step()
            step += 1
            running = loss.item() if math.isnan(running) else 0.95 * running + 0.05 * loss.item()
            if progress is not None:
                progress(ProgressEvent("lm", step, total_steps, {"loss": running}))
    valid_loss = evaluate_lm(model, valid_batches, config.bptt)
    return LMReport(
        train_tokens=int(train_batches.numel()) * ctx.world_size,
        valid_tokens=int(valid_batches.numel()),
        train_loss=float(running),
        valid_loss=valid_loss,
        valid_perplexity=float(math.exp(min(valid_loss, 50.0))),
        seconds=time.perf_counter() - started,
    )
