"""JSONL reader/writer and the corpus registry."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from training.corpora import (
    CORPORA,
    CorpusFormatError,
    CorpusLayoutError,
    iter_corpus,
    load_corpus,
)
from training.corpora.base import Document, EvidenceSpan
from training.corpora.jsonl import iter_jsonl, read_jsonl, write_jsonl


def write_lines(path: Path, *lines: str) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def test_codes_are_normalised_and_deduplicated(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "notes.jsonl",
        json.dumps(
            {
                "id": "a",
                "text": "Orquitis derecha.",
                "codes": ["n44.8 ", "N448", "r52"],
                "spans": [{"code": "n448", "start": 0, "end": 8}],
            }
        ),
        "",  # blank lines are skipped
        json.dumps({"id": 17, "text": "Sin hallazgos.", "codes": []}),
    )

    assert read_jsonl(path) == [
        Document("a", "Orquitis derecha.", ("N44.8", "R52"), (EvidenceSpan("N44.8", 0, 8),)),
        Document("17", "Sin hallazgos.", ()),
    ]


def test_system_choice(tmp_path: Path) -> None:
    path = write_lines(
        tmp_path / "n.jsonl", json.dumps({"id": "1", "text": "t", "codes": ["4019"]})
    )

    assert read_jsonl(path, system="icd9cm")[0].codes == ("401.9",)
    assert read_jsonl(path)[0].codes == ("401.9",)  # default ICD-10-CM puts the dot after 3
    raw = write_lines(
        tmp_path / "raw.jsonl", json.dumps({"id": "1", "text": "t", "codes": [" x1.a"]})
    )
    assert read_jsonl(raw, system=None)[0].codes == ("X1.A",)


def test_round_trip(tmp_path: Path) -> None:
    documents = [
        Document(
            "a", "Dolor torácico\ny disnea.", ("R07.9", "R06.00"), (EvidenceSpan("R07.9", 0, 14),)
        ),
        Document("b", "Niña sana.", ()),
    ]

    assert write_jsonl(documents, tmp_path / "out" / "train.jsonl") == 2
    assert read_jsonl(tmp_path / "out" / "train.jsonl") == documents
    lines = (tmp_path / "out" / "train.jsonl").read_text(encoding="utf-8").splitlines()
    assert json.loads(lines[1]) == {"id": "b", "text": "Niña sana.", "codes": []}
    assert "Niña" in lines[1]  # written as UTF-8, not \\u escapes


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"id": "x", "text": "t", "codes": [}', r"line 2: invalid JSON"),
        ('{"id": "x", "codes": []}', r"line 2: missing field\(s\) \['text'\]"),
        ('["x", "t"]', r"line 2: expected a JSON object"),
        ('{"id": "x", "text": "t", "codes": "N44.8"}', r"line 2: codes must be a list"),
        ('{"id": "x", "text": "t", "codes": [""]}', r"line 2: code '' is not"),
        (
            '{"id": "x", "text": "t", "codes": [], "spans": [{"code": "A", "start": 0, "end": 9}]}',
            r"line 2: span 0-9 lies outside",
        ),
        (
            '{"id": "x", "text": "t", "codes": [], "spans": [{"code": "A", "start": 0}]}',
            r"line 2: span .* needs code, start and end",
        ),
    ],
)
def test_errors_name_the_line(tmp_path: Path, line: str, message: str) -> None:
    path = write_lines(
        tmp_path / "bad.jsonl", json.dumps({"id": "ok", "text": "t", "codes": []}), line
    )

    documents = iter_jsonl(path)
    assert next(documents).id == "ok"  # streamed: the good line comes before the error
    with pytest.raises(CorpusFormatError, match=message):
        next(documents)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CorpusLayoutError, match="missing JSONL file"):
        read_jsonl(tmp_path / "absent.jsonl")


def test_registry_reads_a_file_or_a_split_folder(tmp_path: Path) -> None:
    train = [Document("a", "Orquitis.", ("N45.2",))]
    dev = [Document("b", "Fiebre.", ("R50.9",))]
    write_jsonl(train, tmp_path / "train.jsonl")
    write_jsonl(dev, tmp_path / "dev.jsonl")

    assert load_corpus("jsonl", tmp_path, "dev") == dev
    assert load_corpus("jsonl", tmp_path / "train.jsonl") == train
    assert list(iter_corpus("jsonl", tmp_path, "train", system=None)) == train
    with pytest.raises(ValueError, match="name a split"):
        load_corpus("jsonl", tmp_path)


def test_registry_refuses_unknown_names() -> None:
    assert CORPORA == ("codiesp", "mimic3", "mimic4", "jsonl")
    with pytest.raises(ValueError, match="valid names: codiesp, mimic3, mimic4, jsonl"):
        iter_corpus("mimic5", "/nowhere")
    with pytest.raises(ValueError, match="needs a path"):
        load_corpus("mimic3", None)
