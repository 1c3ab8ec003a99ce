"""Fine-tuning the PLANT classifier with staged unfreezing and dev-split model selection.

Stages (ULMFiT-style): the decoder and the planted L2R factors first with the encoder frozen,
then the top encoder layer as well, then everything. Lower layers get geometrically smaller
learning rates (discriminative fine-tuning). After each epoch the dev split is scored; the best
state by dev MAP is kept, and a stage stops early after `patience` epochs without improvement
(`training.trainer`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from model.batching import length_batches as shared_length_batches
from model.batching import pad_notes
from model.nn.network import PlantClassifier
from training.attention_loss import SpanTokens, span_attention_loss
from training.distributed import SINGLE, DistContext, shard, wrap
from training.metrics import map_from_scores
from training.progress import Notify, ProgressEvent, silent
from training.trainer import train_fixed_epochs, train_with_early_stopping


@dataclass
class StageConfig:
    name: str
    unfreeze: str  # "decoder" | "top" | "all"
    epochs: int
    lr: float


@dataclass
class FinetuneConfig:
    stages: list[StageConfig]  # in order; each starts from where the previous one ended
    batch_size: int = 8
    max_tokens: int = 2048  # tokens read per note; the bundle's runtime reads as many
    layer_lr_decay: float = 2.6  # lr of encoder layer i below the top: lr / decay**i
    weight_decay: float = 0.01
    patience: int = 2
    clip: float = 1.0
    # Weight of the attention loss on the coders' evidence spans (training/attention_loss.py);
    # 0 trains on the codes alone. Only notes with spans add to it.
    attention_weight: float = 0.0
    # Weight of the first stage's own BCE term (model/nn/shortlist.py), beside the decoder's;
    # a network without a first stage ignores it.
    first_stage_weight: float = 1.0


@dataclass
class StageReport:
    name: str
    epochs_run: int
    best_epoch: int
    best_dev_map: float
    seconds: float
    history: list[dict[str, float]]


def length_batches(
    notes: Sequence[np.ndarray], batch_size: int, rng: np.random.Generator | None
) -> list[np.ndarray]:
    """Batches of note indices of similar length (`model.batching.length_batches`, as the runtime
    groups them); the batch order shuffled if `rng`."""
    batches = shared_length_batches([len(note) for note in notes], batch_size)
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
    """Right-padded (input_ids, attention_mask), both int64 (B, T), each note cut to max_tokens
    (`model.batching.pad_notes`, as the runtime pads)."""
    input_ids, attention_mask = pad_notes([notes[i][:max_tokens] for i in indices], pad_id)
    return torch.from_numpy(input_ids).to(device), torch.from_numpy(attention_mask).to(device)


@torch.no_grad()
def predict_logits(
    model: PlantClassifier,
    notes: Sequence[np.ndarray],
    batch_size: int,
    max_tokens: int,
    pad_id: int,
    device: torch.device | None = None,
) -> np.ndarray:
    """Logits float32 (N, C) in note order."""
    model.eval()
    logits = np.zeros((len(notes), model.config.n_codes), dtype=np.float32)
    for indices in length_batches(notes, batch_size, rng=None):
        input_ids, attention_mask = collate(notes, indices, max_tokens, pad_id, device)
        batch_logits, _ = model(input_ids, attention_mask)  # (B, C)
        logits[indices] = batch_logits.cpu().numpy()
    return logits


def predict_scores(
    model: PlantClassifier,
    notes: Sequence[np.ndarray],
    batch_size: int,
    max_tokens: int,
    pad_id: int,
    device: torch.device | None = None,
) -> np.ndarray:
    """Sigmoid scores (N, C) in note order."""
    logits = predict_logits(model, notes, batch_size, max_tokens, pad_id, device)
    return torch.sigmoid(torch.from_numpy(logits)).numpy()


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


def _code_loss(
    outputs: tuple[torch.Tensor, ...],
    target: torch.Tensor,
    first_stage: bool,
    config: FinetuneConfig,
) -> torch.Tensor:
    """BCE of the decoder's logits (outputs[0]), plus the first stage's own weighted BCE
    (outputs[2]) where it has one: the first stage learns to put each note's codes in its
    shortlist."""
    loss = F.binary_cross_entropy_with_logits(outputs[0], target)
    if first_stage:
        first = F.binary_cross_entropy_with_logits(outputs[2], target)
        loss = loss + config.first_stage_weight * first
    return loss


def _clip_gradients(model: PlantClassifier, clip: float) -> None:
    """Clip the network's gradient norm, and the first stage's on its own: its gradients never
    reach the network (it reads detached states), so they do not shrink the network's steps."""
    first_stage = model.decoder.first_stage
    own = {id(p) for p in first_stage.parameters()} if first_stage is not None else set()
    trainable = [p for p in model.parameters() if p.requires_grad]
    torch.nn.utils.clip_grad_norm_([p for p in trainable if id(p) not in own], clip)
    if first_stage is not None:
        torch.nn.utils.clip_grad_norm_([p for p in trainable if id(p) in own], clip)


def _epoch(
    model: PlantClassifier,
    notes: Sequence[np.ndarray],
    labels: np.ndarray,
    optimizer: torch.optim.Optimizer,
    config: FinetuneConfig,
    rng: np.random.Generator,
    on_batch: Callable[[float], None],
    ctx: DistContext,
    spans: Sequence[Sequence[SpanTokens]] | None = None,
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
        first_stage = model.config.first_stage
        outputs = trained(input_ids, attention_mask, first_stage=first_stage)  # (B, C), ...
        loss = _code_loss(outputs, target, first_stage, config)
        attention = outputs[1]  # (B, C, T)
        if spans is not None and config.attention_weight > 0:
            on_spans = span_attention_loss(attention, [spans[i] for i in indices.tolist()])
            if on_spans is not None:
                loss = loss + config.attention_weight * on_spans
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        _clip_gradients(model, config.clip)
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
    progress: Notify | None = None,
    ctx: DistContext = SINGLE,
    *,
    seed: int = 13,
    select_on_dev: bool = True,
    train_spans: Sequence[Sequence[SpanTokens]] | None = None,
) -> StageReport:
    """Train one stage in place (`training.trainer`: early stop, save-best) and leave the model
    at its best dev epoch. `select_on_dev=False` (a final refit: dev notes are training notes)
    runs exactly `stage.epochs` epochs, scores nothing and keeps the last. `train_spans` (per
    training note, `training.attention_loss.span_token_targets`) adds the attention loss."""
    started = time.perf_counter()
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    _set_trainable(model, stage.unfreeze)
    optimizer = torch.optim.AdamW(
        _param_groups(model, stage.lr, config.layer_lr_decay), weight_decay=config.weight_decay
    )
    train_notes, train_labels = train
    dev_notes, dev_labels = dev
    n_batches = len(shard(length_batches(train_notes, config.batch_size, rng=None), ctx))
    total = stage.epochs * n_batches
    notify = progress or silent
    step = 0
    status: dict[str, float] = {}

    def on_batch(loss: float) -> None:
        nonlocal step
        step += 1
        notify(ProgressEvent(stage.name, step, total, {**status, "loss": loss}))

    def train_epoch(epoch: int) -> float:
        return _epoch(
            model, train_notes, train_labels, optimizer, config, rng, on_batch, ctx, train_spans
        )

    def dev_map() -> float:
        # Every rank scores the whole dev split: the parameters are identical after the
        # all-reduce, so all ranks take the same early-stopping decision without talking.
        scores = predict_scores(
            model,
            dev_notes,
            config.batch_size * 2,
            config.max_tokens,
            model.config.pad_id,
            ctx.device,
        )
        return map_from_scores(dev_labels, scores)

    def end_epoch(row: dict[str, float]) -> None:
        status.clear()
        if "dev_map" in row:
            status["dev_map"] = row["dev_map"]
        values = {key: value for key, value in row.items() if key != "epoch"}
        notify(ProgressEvent(stage.name, step, total, values, epoch=int(row["epoch"])))

    if select_on_dev:
        report = train_with_early_stopping(
            model, stage.epochs, config.patience, train_epoch, dev_map, end_epoch, "dev_map"
        )
    else:
        report = train_fixed_epochs(model, stage.epochs, train_epoch, end_epoch)
    return StageReport(
        stage.name,
        report.epochs_run,
        report.best_epoch,
        report.best_score,
        time.perf_counter() - started,
        report.history,
    )
