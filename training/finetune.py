"""Fine-tuning the PLANT classifier with staged unfreezing and dev-split model selection.

Stages (ULMFiT-style): the decoder and the planted L2R factors first with the encoder frozen,
then the top encoder layer as well, then everything. Lower layers get geometrically smaller
learning rates (discriminative fine-tuning). After each epoch the dev split is scored; the best
state by dev MAP is kept, and a stage stops early after `patience` epochs without improvement.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from model.nn.network import PlantClassifier
from training.distributed import SINGLE, DistContext, shard, wrap
from training.metrics import map_from_scores


@dataclass
class StageConfig:
    name: str
    unfreeze: str  # "decoder" | "top" | "all"
    epochs: int
    lr: float


@dataclass
class FinetuneConfig:
    stages: list[StageConfig] = field(
        default_factory=lambda: [
            StageConfig("decoder", "decoder", epochs=8, lr=3e-3),
            StageConfig("top", "top", epochs=4, lr=1e-3),
            StageConfig("all", "all", epochs=4, lr=5e-4),
        ]
    )
    batch_size: int = 8
    max_tokens: int = 2048
    layer_lr_decay: float = 2.6  # lr of encoder layer i below the top: lr / decay**i
    weight_decay: float = 0.01
    patience: int = 2
    clip: float = 1.0
    seed: int = 13


@dataclass
class StageReport:
    name: str
    epochs_run: int
    best_epoch: int
    best_dev_map: float
    seconds: float
    history: list[dict[str, float]]


ProgressFn = Callable[[str, int, int, dict[str, float]], None]


def length_batches(
    notes: Sequence[np.ndarray], batch_size: int, rng: np.random.Generator | None
) -> list[np.ndarray]:
    """Batches of note indices of similar length (less padding); order shuffled if `rng`."""
    order = np.argsort([len(note) for note in notes], kind="stable")
    batches = [order[start : start + batch_size] for start in range(0, len(order), batch_size)]
    if rng is not None:
        rng.shuffle(batches)
    return batches


def collate(
    notes: Sequence[np.ndarray],
    indices: np.ndarray,
    max_tokens: int,
    pad_id: int,
    device: torch.device | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded (input_ids, attention_mask), both int64 (B, T)."""
    picked = [np.asarray(notes[i][:max_tokens], dtype=np.int64) for i in indices]
    length = max(1, max(len(note) for note in picked))
    input_ids = np.full((len(picked), length), pad_id, dtype=np.int64)
    attention_mask = np.zeros((len(picked), length), dtype=np.int64)
    for row, note in enumerate(picked):
        input_ids[row, : len(note)] = note
        attention_mask[row, : len(note)] = 1
    return torch.from_numpy(input_ids).to(device), torch.from_numpy(attention_mask).to(device)


@torch.no_grad()
def predict_scores(
    model: PlantClassifier,
    notes: Sequence[np.ndarray],
    batch_size: int,
    max_tokens: int,
    pad_id: int,
    device: torch.device | None = None,
) -> np.ndarray:
    """Sigmoid scores (N, C) in note order."""
    model.eval()
    scores = np.zeros((len(notes), model.config.n_codes), dtype=np.float32)
    for indices in length_batches(notes, batch_size, rng=None):
        input_ids, attention_mask = collate(notes, indices, max_tokens, pad_id, device)
        logits, _ = model(input_ids, attention_mask)  # (B, C)
        scores[indices] = torch.sigmoid(logits).cpu().numpy()
    return scores


def _set_trainable(model: PlantClassifier, unfreeze: str) -> None:
    for parameter in model.encoder.parameters():
        parameter.requires_grad = unfreeze == "all"
    if unfreeze == "top":
        for parameter in model.encoder.layers[-1].parameters():
            parameter.requires_grad = True
    for parameter in model.decoder.parameters():
        parameter.requires_grad = True


def _param_groups(model: PlantClassifier, lr: float, decay: float) -> list[dict[str, object]]:
    """Decoder at `lr`; encoder layer i below the top at lr / decay**(i + 1), embedding lowest."""
    groups: list[dict[str, object]] = [
        {"params": [p for p in model.decoder.parameters() if p.requires_grad], "lr": lr}
    ]
    seen: set[int] = set()
    layers = list(model.encoder.layers)
    for depth, layer in enumerate(reversed(layers)):
        params = [p for p in layer.parameters() if p.requires_grad]
        seen.update(id(p) for p in layer.parameters())
        if params:
            groups.append({"params": params, "lr": lr / decay ** (depth + 1)})
    rest = [p for p in model.encoder.parameters() if p.requires_grad and id(p) not in seen]
    if rest:
        groups.append({"params": rest, "lr": lr / decay ** (len(layers) + 1)})
    return groups


def _epoch(
    model: PlantClassifier,
    notes: Sequence[np.ndarray],
    labels: np.ndarray,
    optimizer: torch.optim.Optimizer,
    config: FinetuneConfig,
    rng: np.random.Generator,
    on_batch: Callable[[float], None],
    ctx: DistContext,
) -> float:
    # Under torchrun every rank draws the same shuffled batch order (same seed) and takes its
    # own share; DDP averages the gradients.
    trained = wrap(model, ctx)
    trained.train()
    losses: list[float] = []
    for indices in shard(length_batches(notes, config.batch_size, rng), ctx):
        input_ids, attention_mask = collate(
            notes, indices, config.max_tokens, model.config.pad_id, ctx.device
        )
        target = torch.from_numpy(labels[indices].astype(np.float32)).to(ctx.device)  # (B, C)
        logits, _ = trained(input_ids, attention_mask)  # (B, C)
        loss = F.binary_cross_entropy_with_logits(logits, target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(
            [p for p in model.parameters() if p.requires_grad], config.clip
        )
        optimizer.step()
        losses.append(loss.item())
        on_batch(loss.item())
    return float(np.mean(losses)) if losses else math.nan


def run_stage(
    model: PlantClassifier,
    stage: StageConfig,
    train: tuple[Sequence[np.ndarray], np.ndarray],
    dev: tuple[Sequence[np.ndarray], np.ndarray],
    config: FinetuneConfig,
    progress: ProgressFn | None = None,
    ctx: DistContext = SINGLE,
) -> StageReport:
    """Train one stage in place and leave the model at its best dev epoch."""
    started = time.perf_counter()
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    _set_trainable(model, stage.unfreeze)
    optimizer = torch.optim.AdamW(
        _param_groups(model, stage.lr, config.layer_lr_decay), weight_decay=config.weight_decay
    )
    train_notes, train_labels = train
    dev_notes, dev_labels = dev
    n_batches = len(shard(length_batches(train_notes, config.batch_size, rng=None), ctx))
    total = stage.epochs * n_batches
    best_map, best_epoch, best_state = -math.inf, 0, copy.deepcopy(model.state_dict())
    history: list[dict[str, float]] = []
    step = 0
    status: dict[str, float] = {}
    epochs_run = 0

    def on_batch(loss: float) -> None:
        nonlocal step
        step += 1
        if progress is not None:
            progress(stage.name, step, total, {**status, "loss": loss})

    for epoch in range(1, stage.epochs + 1):
        epochs_run = epoch
        train_loss = _epoch(model, train_notes, train_labels, optimizer, config, rng, on_batch, ctx)
        # Every rank scores the whole dev split: the parameters are identical after the
        # all-reduce, so all ranks take the same early-stopping decision without talking.
        dev_scores = predict_scores(
            model,
            dev_notes,
            config.batch_size * 2,
            config.max_tokens,
            model.config.pad_id,
            ctx.device,
        )
        dev_map = map_from_scores(dev_labels, dev_scores)
        history.append({"epoch": epoch, "train_loss": train_loss, "dev_map": dev_map})
        status = {"dev_map": dev_map}
        if progress is not None:
            # An "epoch" entry marks the end of an epoch, so logs get one line per epoch.
            progress(stage.name, step, total, {"epoch": epoch, **history[-1]})
        if dev_map > best_map:
            best_map, best_epoch = dev_map, epoch
            best_state = copy.deepcopy(model.state_dict())
        elif epoch - best_epoch >= config.patience:
            break
    model.load_state_dict(best_state)
    return StageReport(
        stage.name, epochs_run, best_epoch, float(best_map), time.perf_counter() - started, history
    )
