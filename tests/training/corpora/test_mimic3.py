"""MIMIC-III reader on synthetic gzip tables written in the real column layout and quoting."""

from __future__ import annotations

import gzip
import random
from collections.abc import Sequence
from pathlib import Path

import pytest

from model.codes import normalize
from training.corpora import (
    CorpusFormatError,
    CorpusLayoutError,
    load_corpus,
    mimic3,
    most_frequent_codes,
    restrict_codes,
    top_k_codes,
)
from training.corpora.base import Document, EvidenceSpan
from training.corpora.mimic3 import read_mimic3, read_mimic3_codes
from training.corpora.tables import iter_columns

Cell = str | int | None


def csv_line(values: Sequence[Cell]) -> str:
    """MIMIC-III's own quoting: strings quoted (quotes doubled), numbers bare, NULL empty."""
    cells = []
    for value in values:
        if value is None:
            cells.append("")
        elif isinstance(value, int):
            cells.append(str(value))
        else:
            cells.append('"' + value.replace('"', '""') + '"')
    return ",".join(cells) + "\n"


def write_gz(path: Path, header: Sequence[str], rows: Sequence[Sequence[Cell]]) -> None:
    with gzip.open(path, "wt", encoding="utf-8", newline="") as stream:
        stream.write(csv_line(header))
        for row in rows:
            stream.write(csv_line(row))


REPORT_100 = 'Admission Date:  [**2150-1-1**]\nHistory: "chest pain", fever.\n'
LONG_REPORT = "Discharge Diagnosis: hypertension.\n" + "x" * 200_000  # > csv's 128 KiB default

# ROW_ID, SUBJECT_ID, HADM_ID, CHARTDATE, CHARTTIME, STORETIME, CATEGORY, DESCRIPTION, CGID,
# ISERROR, TEXT. Not sorted by HADM_ID, as in the real table.
NOTES: list[list[Cell]] = [
    [5, 10, 100, "2150-01-07", None, None, "Discharge summary", "Addendum", None, None, "Add B"],
    [1, 10, 100, "2150-01-05", None, None, "Discharge summary", "Report", None, None, REPORT_100],
    [2, 20, 200, "2151-03-02", None, None, "Discharge summary", "Report", None, None, LONG_REPORT],
    [
        7,
        10,
        100,
        "2150-01-04",
        "2150-01-04 10:00:00",
        "2150-01-04 10:05:00",
        "Nursing",
        "Nursing Progress Note",
        17,
        None,
        "nursing note, not kept",
    ],
    [3, 10, 100, "2150-01-06", None, None, "Discharge summary", "Addendum", None, None, "Add A"],
    [8, 10, 100, "2150-01-08", None, None, "Discharge summary", "Addendum", None, 1, "erroneous"],
    [9, 30, 300, "2152-01-01", None, None, "Discharge summary", "Report", None, None, "no codes"],
    [10, 40, 400, "2152-02-01", None, None, "Radiology", "CHEST (PA & LAT)", None, None, "film"],
    [11, 50, None, "2152-02-01", None, None, "Discharge summary", "Report", None, None, "no id"],
    [12, 50, 500, "2153-02-01", None, None, "Discharge summary", "Report", None, None, "HTN"],
]
DIAGNOSES: list[list[Cell]] = [
    # ROW_ID, SUBJECT_ID, HADM_ID, SEQ_NUM, ICD9_CODE
    [1, 20, 200, 2, "V4501"],
    [2, 20, 200, 1, "4019"],
    [3, 10, 100, 3, "25000"],
    [4, 10, 100, 1, "E8490"],
    [5, 10, 100, 2, None],  # empty ICD9_CODE rows exist in the real table
    [6, 50, 500, 1, "4019"],
    [7, 40, 400, 1, "25000"],  # admissions without a discharge summary
    [8, 60, 600, 1, "25000"],
    [9, 60, 600, 2, "4280"],
]
PROCEDURES: list[list[Cell]] = [[1, 20, 200, 1, "3893"], [2, 60, 600, 1, "3893"]]


@pytest.fixture
def mimic3_root(tmp_path: Path) -> Path:
    write_gz(tmp_path / "NOTEEVENTS.csv.gz", mimic3.NOTE_COLUMNS, NOTES)
    write_gz(tmp_path / "DIAGNOSES_ICD.csv.gz", mimic3.CODE_COLUMNS, DIAGNOSES)
    write_gz(tmp_path / "PROCEDURES_ICD.csv.gz", mimic3.CODE_COLUMNS, PROCEDURES)
    return tmp_path


def test_icd9_dots_are_restored() -> None:
    assert normalize("4019", "icd9cm") == "401.9"
    assert normalize("V4501", "icd9cm") == "V45.01"
    assert normalize("E8490", "icd9cm") == "E849.0"
    assert normalize("3893", "icd9pcs") == "38.93"


def test_codes_by_admission_follow_seq_num(mimic3_root: Path) -> None:
    codes = read_mimic3_codes(mimic3_root)

    assert codes["200"] == ("401.9", "V45.01", "38.93")
    assert codes["100"] == ("E849.0", "250.00")  # the empty code is dropped
    assert read_mimic3_codes(mimic3_root, "P") == {"200": ("38.93",), "600": ("38.93",)}


def test_discharge_summaries_with_addenda_in_order(mimic3_root: Path) -> None:
    documents = read_mimic3(mimic3_root)

    # 300 has no codes, 400 and 600 no discharge summary, the row without HADM_ID is skipped.
    assert [doc.id for doc in documents] == ["100", "200", "500"]
    first, second, third = documents
    # Report first, then addenda by CHARTDATE; the nursing note and the ISERROR row are gone.
    assert first == Document(
        id="100",
        text=REPORT_100.strip() + "\n\nAdd A\n\nAdd B",
        codes=("E849.0", "250.00"),
    )
    assert second.text == LONG_REPORT.strip()
    assert second.codes == ("401.9", "V45.01", "38.93")
    assert third == Document(id="500", text="HTN", codes=("401.9",))


def test_caml_split_files(mimic3_root: Path) -> None:
    (mimic3_root / "train_full_hadm_ids.csv").write_text("200\n500\n")
    splits = mimic3_root / "splits"
    splits.mkdir()
    (splits / "dev_full_hadm_ids.csv").write_text("100\n")

    assert [doc.id for doc in read_mimic3(mimic3_root, "train")] == ["200", "500"]
    dev = load_corpus("mimic3", mimic3_root, "dev", splits_dir=splits)
    assert [doc.id for doc in dev] == ["100"]
    with pytest.raises(CorpusLayoutError, match=r"test_full_hadm_ids\.csv"):
        read_mimic3(mimic3_root, "test")


def test_split_listing_unknown_admission_warns(mimic3_root: Path) -> None:
    (mimic3_root / "test_full_hadm_ids.csv").write_text("100\n999\n")

    with pytest.warns(UserWarning, match="1 of 2 admissions"):
        documents = read_mimic3(mimic3_root, "test")
    assert [doc.id for doc in documents] == ["100"]


def test_top_50_counts_only_admissions_with_a_summary(
    mimic3_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 250.00 is on three admissions but only one has a discharge summary; 401.9 is on two that
    # do. CAML counts over summarised admissions, so with a label set of one it keeps 401.9.
    monkeypatch.setattr(mimic3, "TOP_K", 1)

    documents = read_mimic3(mimic3_root, subset="50")

    assert [(doc.id, doc.codes) for doc in documents] == [("200", ("401.9",)), ("500", ("401.9",))]


def test_missing_table_is_named(mimic3_root: Path) -> None:
    (mimic3_root / "PROCEDURES_ICD.csv.gz").unlink()

    assert [doc.id for doc in read_mimic3(mimic3_root, codes="D")] == ["100", "200", "500"]
    with pytest.raises(
        CorpusLayoutError, match=r"PROCEDURES_ICD\.csv\.gz or .*PROCEDURES_ICD\.csv"
    ):
        read_mimic3(mimic3_root)


def test_plain_csv_and_missing_column(tmp_path: Path) -> None:
    with (tmp_path / "DIAGNOSES_ICD.csv").open("w", encoding="utf-8") as stream:
        stream.write(csv_line(["ROW_ID", "SUBJECT_ID", "HADM_ID", "SEQ_NUM", "ICD9"]))
        stream.write(csv_line([1, 2, 3, 1, "4019"]))

    with pytest.raises(CorpusFormatError, match=r"lacks column\(s\) \['ICD9_CODE'\]"):
        read_mimic3_codes(tmp_path, "D")


def test_notes_are_streamed_not_loaded(tmp_path: Path) -> None:
    # A table whose tail is cut off: the rows before the damage are read, which only holds if
    # the reader streams instead of loading the file first; the damage itself is named.
    path = tmp_path / "NOTEEVENTS.csv.gz"
    noise = random.Random(0)
    texts = [noise.randbytes(1000).hex() for _ in range(300)]  # incompressible-ish, 600 kB
    rows: list[list[Cell]] = [
        [i, 1, i, "2150-01-01", None, None, "Radiology", "X", None, None, text]
        for i, text in enumerate(texts)
    ]
    write_gz(path, mimic3.NOTE_COLUMNS, rows)
    path.write_bytes(path.read_bytes()[:20_000])

    stream = iter_columns(path, ("ROW_ID", "TEXT"))
    assert next(stream) == ("0", texts[0])
    with pytest.raises(CorpusFormatError, match="truncated or corrupt"):
        list(stream)


def test_top_k_codes_ranks_by_frequency_then_code() -> None:
    documents = [
        Document("1", "a", ("401.9", "250.00"), (EvidenceSpan("250.00", 0, 1),)),
        Document("2", "b", ("250.00", "428.0")),
        Document("3", "c", ("428.0", "V45.01")),
        Document("4", "d", ("V45.01",)),
    ]
    # Counts: 250.00 2, 428.0 2, V45.01 2, 401.9 1; ties go in code order.
    assert most_frequent_codes(documents, 2) == ["250.00", "428.0"]
    assert top_k_codes(documents, 2) == [
        Document("1", "a", ("250.00",), (EvidenceSpan("250.00", 0, 1),)),
        Document("2", "b", ("250.00", "428.0")),
        Document("3", "c", ("428.0",)),
    ]
    kept = restrict_codes(documents, {"V45.01"}, keep_empty=True)
    assert [doc.codes for doc in kept] == [(), (), ("V45.01",), ("V45.01",)]
    assert kept[0].spans == ()
