"""Helpers shared by the benchmark scripts: the notes they time, latency summaries, the machine
facts and exact command line every report starts with, and Markdown output.

Scripts import it as `_common` (they run as `python benchmarks/<script>.py`, so this folder is
first on sys.path). Nothing here times anything itself.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import shlex
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from model.overlap import usable_cores
from training.corpora import load_corpus

DEFAULT_CORPUS_PATH = "../shared/codiesp"


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Shows defaults, except unset ones (their help says what unset means), and keeps the
    module docstring's line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str | None:
        if action.default is None:
            return action.help
        return super()._get_help_string(action)


@dataclass(frozen=True)
class LatencySummary:
    """Percentiles of one set of latencies, in milliseconds."""

    n: int
    p50: float
    p95: float
    p99: float
    mean: float


def summarize(latencies_ms: Sequence[float]) -> LatencySummary:
    """p50/p95/p99 by linear interpolation (numpy's default); NaN for an empty set."""
    if len(latencies_ms) == 0:
        nan = float("nan")
        return LatencySummary(0, nan, nan, nan, nan)
    values = np.asarray(latencies_ms, dtype=np.float64)
    p50, p95, p99 = np.percentile(values, [50, 95, 99])
    return LatencySummary(len(values), float(p50), float(p95), float(p99), float(values.mean()))


def fmt_ms(value: float, digits: int = 1) -> str:
    return "n/a" if not np.isfinite(value) else f"{value:.{digits}f}"


def parse_int_list(text: str) -> list[int]:
    """`"1,8,32"` -> [1, 8, 32]; every value must be a positive integer."""
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or any(value < 1 for value in values):
        raise ValueError(f"expected a comma-separated list of positive integers, got {text!r}")
    return values


def load_notes(
    corpus: str,
    path: str,
    split: str,
    *,
    lang: str = "en",
    codes: str = "D",
    limit: int | None = None,
) -> list[str]:
    """The texts of a corpus split, in corpus order, at most `limit` of them, none empty.

    `lang` and `codes` only apply to CodiEsp; a JSONL corpus is a file or a folder of
    `{split}.jsonl` (how the tests feed small synthetic notes).
    """
    options: dict[str, str] = {"lang": lang, "codes": codes} if corpus == "codiesp" else {}
    texts = [doc.text for doc in load_corpus(corpus, path, split, **options) if doc.text.strip()]
    if not texts:
        raise SystemExit(f"error: {corpus} {split} at {path} holds no non-empty notes")
    return texts if limit is None else texts[:limit]


def command_line() -> str:
    """The command as typed (interpreter included), so a report can be reproduced."""
    return shlex.join(sys.orig_argv)


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def busy_warning() -> str | None:
    """A warning when other work was running: one busy core already distorts a 2-core run."""
    one_minute = os.getloadavg()[0]
    if one_minute < 1.0:
        return None
    return (
        f"**Warning: the machine was busy (1-minute load {one_minute:.2f} on "
        f"{os.cpu_count()} cores): these numbers are inflated; rerun on a quiet machine.**"
    )


def machine_facts(packages: Sequence[str]) -> list[tuple[str, str]]:
    """CPU, cores usable by this process, load, OS and package versions."""
    usable = usable_cores()
    versions = ", ".join(f"{name} {_version(name)}" for name in packages)
    return [
        ("date (UTC)", datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S")),
        ("CPU", _cpu_model()),
        ("cores", f"{os.cpu_count()} logical, {usable} usable by this process"),
        # A busy machine inflates every number: the load at the start says how quiet it was.
        ("load average (1/5/15 min) at start", load_average()),
        ("OS", f"{platform.system()} {platform.release()} ({platform.machine()})"),
        ("Python", platform.python_version()),
        ("packages", versions),
    ]


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub Markdown table; the first column left-aligned, the others right-aligned."""
    align = [":---"] + ["---:"] * (len(headers) - 1)
    lines = ["| " + " | ".join(headers) + " |", "| " + " | ".join(align) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def facts_list(facts: Sequence[tuple[str, str]]) -> str:
    return "\n".join(f"- {name}: {value}" for name, value in facts)


def emit(report: str, out: Path | None) -> None:
    """Print the report to stdout and, when asked, write it to `out`."""
    print(report, flush=True)
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(report + "\n", encoding="utf-8")
        print(f"wrote {out}", file=sys.stderr)
