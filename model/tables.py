"""Tables the command line prints, in one of three formats, never cut to fit a width.

`table` draws boxes for a person at a terminal (long cells wrap, none is shortened); `markdown`
writes whole Markdown tables that survive a pipe, a log or a file; `json` writes the raw values.
`auto`, the default, is `table` when stdout is a terminal and `markdown` otherwise. Shared by the
training and service commands, so every table prints the same way.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TextIO


class OutputFormat(StrEnum):
    auto = "auto"
    table = "table"
    markdown = "markdown"
    json = "json"


FORMAT_HELP = (
    "table (boxes), markdown (whole, for pipes and files) or json; "
    "auto: table at a terminal, markdown otherwise"
)


@dataclass(frozen=True)
class Table:
    """A titled table of raw values (numbers stay numbers until printed)."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[tuple[object, ...], ...]

    @classmethod
    def of(cls, title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> Table:
        return cls(title, tuple(columns), tuple(tuple(row) for row in rows))

    def numeric(self, index: int) -> bool:
        """True when every value of the column is a number (such columns align right)."""
        values = [row[index] for row in self.rows]
        return bool(values) and all(
            isinstance(value, int | float) and not isinstance(value, bool) for value in values
        )


def format_value(value: object) -> str:
    """Counts as integers, metrics with four decimals, undefined metrics (NaN) as "-"."""
    if isinstance(value, float):
        if math.isnan(value):
            return "-"
        if value.is_integer() and abs(value) > 1:
            return str(int(value))
        return f"{value:.4f}"
    if value is None:
        return ""
    return str(value)


def resolve(output_format: OutputFormat, stream: TextIO | None = None) -> OutputFormat:
    """`auto` becomes `table` at a terminal and `markdown` anywhere else."""
    if output_format is not OutputFormat.auto:
        return output_format
    stream = stream if stream is not None else sys.stdout
    return OutputFormat.table if stream.isatty() else OutputFormat.markdown


def _markdown_cell(value: object) -> str:
    # A pipe would end the cell and a newline the row; both are kept, escaped.
    return format_value(value).replace("|", "\\|").replace("\n", "<br>")


def to_markdown(table: Table) -> str:
    lines = [f"### {table.title}", ""] if table.title else []
    lines.append("| " + " | ".join(_markdown_cell(name) for name in table.columns) + " |")
    lines.append(
        "|"
        + "|".join("---:" if table.numeric(i) else "---" for i in range(len(table.columns)))
        + "|"
    )
    for row in table.rows:
        lines.append("| " + " | ".join(_markdown_cell(value) for value in row) + " |")
    return "\n".join(lines) + "\n"


def _json_value(value: object) -> object:
    if isinstance(value, float) and not math.isfinite(value):
        return None  # JSON has no NaN
    if isinstance(value, int | float | str | bool) or value is None:
        return value
    return str(value)


def to_json_object(table: Table) -> dict[str, Any]:
    return {
        "title": table.title,
        "columns": list(table.columns),
        "rows": [
            {name: _json_value(value) for name, value in zip(table.columns, row, strict=True)}
            for row in table.rows
        ],
    }


def to_rich(table: Table) -> Any:
    """A rich table whose cells fold onto more lines rather than end in an ellipsis."""
    from rich.table import Table as RichTable

    drawn = RichTable(title=table.title or None, show_header=True, header_style="bold")
    for index, name in enumerate(table.columns):
        drawn.add_column(name, justify="right" if table.numeric(index) else "left", overflow="fold")
    for row in table.rows:
        drawn.add_row(*(format_value(value) for value in row))
    return drawn


def print_tables(
    tables: Sequence[Table],
    output_format: OutputFormat = OutputFormat.auto,
    *,
    stream: TextIO | None = None,
    extra: dict[str, Any] | None = None,
) -> None:
    """Print `tables` to `stream` (stdout) in `output_format`. For JSON, one document:
    `{"tables": [...], **extra}`."""
    stream = stream if stream is not None else sys.stdout
    chosen = resolve(output_format, stream)
    if chosen is OutputFormat.json:
        document = {"tables": [to_json_object(table) for table in tables], **(extra or {})}
        stream.write(json.dumps(document, indent=2, ensure_ascii=False) + "\n")
    elif chosen is OutputFormat.markdown:
        stream.write("\n".join(to_markdown(table) for table in tables))
    else:
        from rich.console import Console

        console = Console(file=stream)
        for table in tables:
            console.print(to_rich(table))
    stream.flush()
