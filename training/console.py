"""Progress bars and summary tables for command-line tools: one look for every long job."""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

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
from rich.table import Table
from rich.text import Text

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
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in rows:
        table.add_row(name, format_value(value))
    return table


def format_value(value: object) -> str:
    """Counts as integers, metrics with four decimals, undefined metrics (NaN) as "-"."""
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if value.is_integer() and abs(value) > 1:
            return str(int(value))
        return f"{value:.4f}"
    return str(value)


def bucket_table(
    title: str,
    rows: Sequence[tuple[str, Mapping[str, float]]],
    first_column: str = "train frequency",
) -> Table:
    """One row per group (by default a training-frequency bucket), one column per metric."""
    table = Table(title=title, show_header=True, header_style="bold")
    table.add_column(first_column)
    names = list(rows[0][1]) if rows else []
    for name in names:
        table.add_column(name.replace("_", " "), justify="right")
    for bucket, values in rows:
        table.add_row(bucket, *(format_value(values[name]) for name in names))
    return table
