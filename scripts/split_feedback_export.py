"""Split the feedback export (JSONL from GET /v1/feedback/export) into train.jsonl and dev.jsonl.

The folder written is what `plant-icd train --corpus jsonl --path FOLDER` reads. A note's split
follows from a hash of its id alone, so a later, larger export keeps every note in its split.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Iterable
from pathlib import Path

SPLITS = ("train", "dev")


class ExportError(Exception):
    """The export is not what GET /v1/feedback/export writes; the message names the line."""


def dev_share(note_id: str, salt: str = "") -> float:
    """Where a note falls in [0, 1): the first 8 bytes of sha256(salt + id), as a fraction."""
    digest = hashlib.sha256(f"{salt}{note_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def split_of(note_id: str, dev_fraction: float, salt: str = "") -> str:
    return "dev" if dev_share(note_id, salt) < dev_fraction else "train"


def split_lines(
    lines: Iterable[str], dev_fraction: float, salt: str = "", source: str = "export"
) -> dict[str, list[str]]:
    """The export's lines by split, unchanged and in export order; checks each line's fields."""
    by_split: dict[str, list[str]] = {split: [] for split in SPLITS}
    seen: set[str] = set()
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{source} line {line_no}"
        try:
            note = json.loads(line)
        except json.JSONDecodeError as error:
            raise ExportError(f"{where} is not JSON: {error}") from None
        if not isinstance(note, dict):
            raise ExportError(f"{where} is not a JSON object")
        note_id = note.get("id")
        # Integer ids are read as their decimal string, as training.corpora.jsonl reads them.
        if isinstance(note_id, bool) or not isinstance(note_id, str | int):
            raise ExportError(f'{where} has no string "id"')
        if not isinstance(note.get("text"), str) or not isinstance(note.get("codes"), list):
            raise ExportError(f'{where} needs "text" (string) and "codes" (list)')
        if str(note_id) in seen:
            raise ExportError(f"{where} repeats id {note_id!r}")
        seen.add(str(note_id))
        by_split[split_of(str(note_id), dev_fraction, salt)].append(line.rstrip("\n"))
    return by_split


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("export", type=Path, help="the JSONL file GET /v1/feedback/export wrote")
    parser.add_argument("out", type=Path, help="folder for train.jsonl and dev.jsonl")
    parser.add_argument(
        "--dev-fraction", type=float, default=0.15, help="share of notes for dev (default 0.15)"
    )
    parser.add_argument("--salt", default="", help="changes which notes go to dev")
    args = parser.parse_args(argv)
    if not 0.0 < args.dev_fraction < 1.0:
        parser.error("--dev-fraction must be between 0 and 1")
    try:
        with args.export.open(encoding="utf-8") as stream:
            by_split = split_lines(stream, args.dev_fraction, args.salt, str(args.export))
    except (ExportError, OSError) as error:
        print(f"split_feedback_export: error: {error}", file=sys.stderr)
        return 1
    if not by_split["train"] or not by_split["dev"]:
        counts = {split: len(lines) for split, lines in by_split.items()}
        print(f"split_feedback_export: error: a split is empty {counts}", file=sys.stderr)
        return 1
    args.out.mkdir(parents=True, exist_ok=True)
    for split, lines in by_split.items():
        (args.out / f"{split}.jsonl").write_text(
            "".join(f"{line}\n" for line in lines), encoding="utf-8"
        )
        print(f"{split}: {len(lines)} notes -> {args.out / f'{split}.jsonl'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
