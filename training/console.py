"""Progress and summary tables for command-line tools: one look for every long job.

Tables are `model.tables.Table` (printed whole, as boxes, Markdown or JSON); progress is a bar
with rate and ETA at a terminal, and one line per stage and epoch in a log."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from model.tables import Table
from training.progress import Notify, ProgressEvent

console = Console(stderr=True)
stdout = Console()


class RateColumn(ProgressColumn):
    """Items per second, so a slow stage is visible before its ETA settles."""

    def render(self, task: Task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("?/s" if speed is None else f"{speed:,.1f}/s", style="progress.data.speed")


@contextmanager
def progress_bar() -> Iterator[Progress]:
    columns: Sequence[ProgressColumn] = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        RateColumn(),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[status]}"),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        yield progress


def summary_table(title: str, rows: Sequence[tuple[str, object]]) -> Table:
    return Table.of(title, ("metric", "value"), rows)


def bucket_table(
    title: str,
    rows: Sequence[tuple[str, Mapping[str, float]]],
    first_column: str = "train frequency",
) -> Table:
    """One row per group (by default a training-frequency bucket), one column per metric."""
    names = list(rows[0][1]) if rows else []

    def cell(name: str, value: float) -> object:
        # Counts (n_codes, n_gold, ...) arrive as floats; print them as the counts they are.
        return int(value) if name.startswith("n_") and value == value else value

    return Table.of(
        title,
        [first_column, *(name.replace("_", " ") for name in names)],
        [[bucket, *(cell(name, values[name]) for name in names)] for bucket, values in rows],
    )


# -- training progress -----------------------------------------------------------------------------


def _status_text(status: Mapping[str, float]) -> str:
    return "  ".join(f"{key} {value:.4f}" for key, value in status.items())


class LineProgress:
    """Progress for logs and pipes: a line when a stage starts, one per epoch, and one when it
    ends (when the next stage starts, or at `close`: early stopping can end a stage before its
    planned steps), each with the elapsed time; never a redrawn bar."""

    def __init__(self, write: Callable[[str], None]) -> None:
        self.write = write
        self.stage: str | None = None
        self.started = 0.0
        self.steps = 0
        self.status: Mapping[str, float] = {}
        self.last_epoch: Mapping[str, float] = {}  # the values of the stage's latest epoch

    def __call__(self, event: ProgressEvent) -> None:
        if event.stage != self.stage:
            self.close()
            self.stage, self.started = event.stage, time.monotonic()
            self.write(f"{event.stage}: started ({event.total} steps planned)")
        self.steps = event.done
        elapsed = time.monotonic() - self.started
        if event.ends_epoch:
            self.write(
                f"{event.stage}: epoch {event.epoch} {_status_text(event.values)} ({elapsed:.0f} s)"
            )
            self.last_epoch = event.values
        else:
            self.status = event.values

    def close(self) -> None:
        """End the current stage's line, if a stage is running."""
        if self.stage is None:
            return
        elapsed = time.monotonic() - self.started
        # After epochs, the last epoch's values, named so (the stage keeps its best epoch, which
        # the epoch lines show); the last step's status (such as the loss) otherwise.
        last = _status_text(self.status)
        if self.last_epoch:
            last = f"last epoch {_status_text(self.last_epoch)}"
        self.write(
            f"{self.stage}: done, {self.steps} steps in {elapsed:.0f} s"
            + (f"; {last}" if last else "")
        )
        self.stage, self.status, self.last_epoch = None, {}, {}


@contextmanager
def training_progress() -> Iterator[Notify]:
    """Bars with rate and ETA at a terminal (stderr); plain lines, one per stage start, epoch and
    stage end, when stderr is a log or a pipe."""
    if not console.is_terminal:
        lines = LineProgress(lambda line: console.print(line, markup=False, highlight=False))
        try:
            yield lines
        finally:
            lines.close()
        return
    with progress_bar() as progress:
        tasks: dict[str, Any] = {}

        def notify(event: ProgressEvent) -> None:
            if event.stage not in tasks:
                tasks[event.stage] = progress.add_task(event.stage, total=event.total, status="")
            if event.ends_epoch:
                progress.console.print(
                    f"{event.stage} epoch {event.epoch}: {_status_text(event.values)}",
                    markup=False,
                )
                return
            progress.update(
                tasks[event.stage],
                completed=event.done,
                total=event.total,
                status=_status_text(event.values),
            )

        yield notify
