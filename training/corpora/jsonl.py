"""A generic corpus format: JSON Lines, one document per line, read and written as a stream.

Each line is `{"id": ..., "text": ..., "codes": [...], "spans": [{"code", "start", "end"}]}`
("spans" optional). It is how a site brings its own coded notes without writing a reader.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from model.codes import CodeSystem, normalize
from training.corpora.base import Document, EvidenceSpan
from training.corpora.errors import CorpusFormatError, CorpusLayoutError
from training.corpora.tables import unique


def iter_jsonl(
    path: Path | str, *, system: CodeSystem | str | None = CodeSystem.ICD10_CM
) -> Iterator[Document]:
    """Stream the documents of a JSONL file in file order; blank lines are skipped.

    Codes (and span codes) are normalised as `system`; with `system` None they are kept as
    written, only stripped and upper-cased. A malformed line raises CorpusFormatError naming
    the file and line number.
    """
    path = Path(path)
    if not path.is_file():
        raise CorpusLayoutError(f"missing JSONL file {path}: expected one JSON document per line")
    with path.open(encoding="utf-8") as stream:
        for line_no, line in enumerate(stream, start=1):
            if line.strip():
                yield _parse_line(line, system, f"{path} line {line_no}")


def read_jsonl(
    path: Path | str, *, system: CodeSystem | str | None = CodeSystem.ICD10_CM
) -> list[Document]:
    """`iter_jsonl` as a list."""
    return list(iter_jsonl(path, system=system))


def write_jsonl(documents: Iterable[Document], path: Path | str) -> int:
    """Write `documents` one per line (UTF-8, spans only when present); returns how many."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    with path.open("w", encoding="utf-8") as stream:
        for document in documents:
            record: dict[str, Any] = {
                "id": document.id,
                "text": document.text,
                "codes": list(document.codes),
            }
            if document.spans:
                record["spans"] = [
                    {"code": span.code, "start": span.start, "end": span.end}
                    for span in document.spans
                ]
            stream.write(json.dumps(record, ensure_ascii=False) + "\n")
            count += 1
    return count


def _normalise(code: Any, system: CodeSystem | str | None, where: str) -> str:
    if not isinstance(code, str) or not code.strip():
        raise CorpusFormatError(f"{where}: code {code!r} is not a non-empty string")
    return code.strip().upper() if system is None else normalize(code, system)


def _parse_line(line: str, system: CodeSystem | str | None, where: str) -> Document:
    try:
        record = json.loads(line)
    except json.JSONDecodeError as error:
        raise CorpusFormatError(f"{where}: invalid JSON ({error})") from None
    if not isinstance(record, dict):
        raise CorpusFormatError(f"{where}: expected a JSON object, got {type(record).__name__}")
    missing = [key for key in ("id", "text", "codes") if key not in record]
    if missing:
        raise CorpusFormatError(f"{where}: missing field(s) {missing}")
    doc_id, text, codes = record["id"], record["text"], record["codes"]
    # Integer ids are common in exports (MIMIC hadm_id); they are read as their decimal string.
    if isinstance(doc_id, bool) or not isinstance(doc_id, str | int):
        raise CorpusFormatError(f"{where}: id must be a string, got {doc_id!r}")
    if not isinstance(text, str):
        raise CorpusFormatError(f"{where}: text must be a string")
    if not isinstance(codes, list):
        raise CorpusFormatError(f"{where}: codes must be a list, got {codes!r}")
    doc_codes = unique(_normalise(code, system, where) for code in codes)
    spans: list[EvidenceSpan] = []
    for span in record.get("spans") or []:
        if not isinstance(span, dict) or not {"code", "start", "end"} <= span.keys():
            raise CorpusFormatError(f"{where}: span {span!r} needs code, start and end")
        start, end = span["start"], span["end"]
        if not all(
            isinstance(bound, int) and not isinstance(bound, bool) for bound in (start, end)
        ):
            raise CorpusFormatError(f"{where}: span {span!r} offsets must be integers")
        if not 0 <= start <= end <= len(text):
            raise CorpusFormatError(
                f"{where}: span {start}-{end} lies outside the text of {len(text)} characters"
            )
        spans.append(EvidenceSpan(_normalise(span["code"], system, where), start, end))
    return Document(id=str(doc_id), text=text, codes=doc_codes, spans=tuple(spans))
