"""The one progress event every long training stage reports, and the type of its listeners.

A stage calls `notify(ProgressEvent(...))` after each step; the end of an epoch is an event of its
own (`epoch` set, `values` its summary), so listeners never look for a magic key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ProgressEvent:
    """`done` of `total` steps of `stage`, with the latest values (loss, dev MAP...)."""

    stage: str
    done: int
    total: int
    values: Mapping[str, float] = field(default_factory=dict)
    epoch: int | None = None  # set on the event that ends this epoch

    @property
    def ends_epoch(self) -> bool:
        return self.epoch is not None


Notify = Callable[[ProgressEvent], None]


def silent(event: ProgressEvent) -> None:
    """A listener that ignores every event."""
    del event
