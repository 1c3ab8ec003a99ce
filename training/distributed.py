"""Data-parallel training under `torchrun`: one process per device, gradients averaged by DDP.

Without torchrun (no WORLD_SIZE in the environment) everything here is a no-op on one process,
so the same training code runs on a laptop, on 2 CPU processes (gloo) and on N GPUs (nccl).
Rank 0 alone writes the stage cache and the bundle; the other ranks wait at a barrier and read.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn

T = TypeVar("T")


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


SINGLE = DistContext()


def init_distributed() -> DistContext:
    """Join the process group torchrun describes in the environment, or run alone."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        device = torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")
        return DistContext(device=device)
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device, backend = torch.device("cuda", local_rank), "nccl"
    else:
        device, backend = torch.device("cpu"), "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    return DistContext(rank, world_size, local_rank, device)


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def shard(items: Sequence[T], ctx: DistContext) -> list[T]:
    """This rank's share of `items`, every rank getting the same count (the tail is dropped).

    Equal counts matter: DDP all-reduces once per backward, so a rank with one batch more would
    wait forever for the others.
    """
    usable = len(items) - len(items) % ctx.world_size if ctx.enabled else len(items)
    return list(items[ctx.rank : usable : ctx.world_size])


def wrap(model: nn.Module, ctx: DistContext) -> nn.Module:
    """DDP over the parameters that currently require gradients (build anew after unfreezing)."""
    if not ctx.enabled:
        return model
    device_ids = [ctx.local_rank] if ctx.device.type == "cuda" else None
    # Buffers (the static branch's MI table) are identical on every rank and never change:
    # broadcasting them before each forward would only cost time.
    return nn.parallel.DistributedDataParallel(
        model, device_ids=device_ids, broadcast_buffers=False
    )


def shutdown(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()
