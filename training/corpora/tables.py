"""CSV plumbing shared by the MIMIC readers: find a table (`.csv.gz` or `.csv`), stream its rows.

Rows are read with the csv module over a text stream, never loaded whole: MIMIC's note tables
are gigabytes and their TEXT fields are quoted and span many lines.
"""

from __future__ import annotations

import csv
import gzip
import io
import sys
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TextIO

from model.codes import CodeSystem, normalize
from training.corpora.errors import CorpusFormatError, CorpusLayoutError


def find_table(folder: Path, stem: str) -> Path:
    """`folder/stem.csv.gz`, else `folder/stem.csv`; CorpusLayoutError naming both if neither."""
    for suffix in (".csv.gz", ".csv"):
        candidate = folder / f"{stem}{suffix}"
        if candidate.is_file():
            return candidate
    expected = " or ".join(str(folder / f"{stem}{suffix}") for suffix in (".csv.gz", ".csv"))
    raise CorpusLayoutError(f"missing table {stem}: expected {expected}")


def open_text(path: Path) -> TextIO:
    """Open a `.csv` or `.csv.gz` for the csv module (UTF-8, newline='' keeps quoted newlines)."""
    if path.name.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return path.open(encoding="utf-8", newline="")


def _allow_long_fields() -> None:
    # A discharge summary is far longer than the csv module's 128 KiB default field limit;
    # sys.maxsize overflows a C long on some platforms, so cap at the largest 32-bit value.
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


def iter_columns(path: Path, columns: Sequence[str]) -> Iterator[tuple[str, ...]]:
    """Stream `columns` of every row of a CSV table with a header, in file order.

    Header names match case-insensitively (MIMIC-III writes them upper case, MIMIC-IV lower
    case). A missing column raises CorpusFormatError listing what the header has.
    """
    _allow_long_fields()
    with open_text(path) as stream:
        reader = csv.reader(stream)
        header = next(reader, None)
        if header is None:
            raise CorpusFormatError(f"{path} is empty: expected a header with {list(columns)}")
        position = {name.strip().lower(): index for index, name in enumerate(header)}
        missing = [name for name in columns if name.lower() not in position]
        if missing:
            raise CorpusFormatError(
                f"{path} lacks column(s) {missing}: expected {list(columns)}, found {header}"
            )
        indices = [position[name.lower()] for name in columns]
        width = max(indices) + 1
        try:
            for row in reader:
                if not row:
                    continue
                if len(row) < width:
                    raise CorpusFormatError(
                        f"{path} line {reader.line_num}: {len(row)} fields, expected {len(header)}"
                    )
                yield tuple(row[index] for index in indices)
        except (EOFError, OSError, UnicodeDecodeError, csv.Error) as error:
            raise CorpusFormatError(
                f"{path}: unreadable after line {reader.line_num} ({error}); the file may be "
                "truncated or corrupt: download it again"
            ) from error


def parse_admission_id(value: str) -> str | None:
    """An admission id as a plain integer string (`'123'`, `'123.0'` -> `'123'`); None if empty."""
    value = value.strip()
    if not value:
        return None
    return value[:-2] if value.endswith(".0") else value


def read_id_list(path: Path) -> list[str]:
    """One admission id per line, no header (CAML's `*_hadm_ids.csv`); blank lines skipped."""
    if not path.is_file():
        raise CorpusLayoutError(f"missing split file {path}: expected one HADM_ID per line")
    ids: list[str] = []
    with path.open(encoding="utf-8") as stream:
        for line in stream:
            admission = parse_admission_id(line.split(",")[0])
            if admission is not None:
                ids.append(admission)
    return ids


def unique(codes: Iterable[str]) -> tuple[str, ...]:
    """Codes in first-seen order without duplicates (the `Document.codes` contract)."""
    return tuple(dict.fromkeys(codes))


def codes_by_seq(rows: Iterable[Sequence[str]], system: CodeSystem) -> dict[str, list[str]]:
    """(admission id, SEQ_NUM, code) rows -> admission -> its normalised codes by SEQ_NUM.

    Rows without an admission id or a code are dropped; rows without a SEQ_NUM go last; equal
    SEQ_NUMs keep file order.
    """
    keyed: dict[str, list[tuple[tuple[int, int], str]]] = {}
    for row_order, (hadm, seq_num, code) in enumerate(rows):
        admission = parse_admission_id(hadm)
        if admission is None or not code.strip():
            continue
        seq = seq_num.strip()
        position = (int(float(seq)) if seq else sys.maxsize, row_order)
        keyed.setdefault(admission, []).append((position, normalize(code, system)))
    return {admission: [code for _, code in sorted(coded)] for admission, coded in keyed.items()}
