"""MIMIC-IV reader and patient-level split on synthetic gzip tables in the real layout."""

from __future__ import annotations

import csv
import gzip
from collections.abc import Sequence
from pathlib import Path

import pytest

from training.corpora import CorpusLayoutError, load_corpus
from training.corpora.base import Document
from training.corpora.mimic4 import (
    DIAGNOSIS_COLUMNS,
    NOTE_COLUMNS,
    PROCEDURE_COLUMNS,
    patient_split,
    read_mimic4,
    read_mimic4_codes,
)


def write_gz(path: Path, header: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    # MIMIC-IV's files are plain minimal-quoting CSV with a lower-case header.
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(header)
        writer.writerows(rows)


FIRST_NOTE = " \nName:  ___ Unit No: ___\nChief Complaint:\nDyspnea, cough\n"
NOTES = [
    # note_id, subject_id, hadm_id, note_type, note_seq, charttime, storetime, text
    ["30-DS-22", 3, 2003, "DS", 22, "2182-01-02 00:00:00", "2182-01-03 10:00:00", "Second."],
    ["10-DS-21", 1, 2001, "DS", 21, "2180-05-07 00:00:00", "2180-05-09 15:26:00", FIRST_NOTE],
    ["10-DS-25", 1, 2002, "DS", 25, "2181-01-01 00:00:00", "2181-01-02 09:00:00", "ICD-9 era."],
    ["30-DS-9", 3, 2003, "DS", 9, "2182-01-01 00:00:00", "2182-01-02 08:00:00", "First."],
]
DIAGNOSES = [
    # subject_id, hadm_id, seq_num, icd_code, icd_version
    [1, 2001, 2, "I10", 10],
    [1, 2001, 1, "E119", 10],
    [1, 2002, 1, "4019", 9],
    [3, 2003, 1, "J189", 10],
    [4, 2004, 1, "N179", 10],  # coded admission without a discharge note
]
PROCEDURES = [
    # subject_id, hadm_id, seq_num, chartdate, icd_code, icd_version
    [1, 2001, 1, "2180-05-06", "0DTJ4ZZ", 10],
    [1, 2002, 1, "2181-01-01", "3893", 9],
]


@pytest.fixture
def mimic4_root(tmp_path: Path) -> Path:
    write_gz(tmp_path / "note" / "discharge.csv.gz", NOTE_COLUMNS, NOTES)
    write_gz(tmp_path / "hosp" / "diagnoses_icd.csv.gz", DIAGNOSIS_COLUMNS, DIAGNOSES)
    write_gz(tmp_path / "hosp" / "procedures_icd.csv.gz", PROCEDURE_COLUMNS, PROCEDURES)
    return tmp_path


def test_icd10_admissions(mimic4_root: Path) -> None:
    documents = read_mimic4(mimic4_root, icd_version=10)

    assert documents == [
        Document("2001", FIRST_NOTE.strip(), ("E11.9", "I10", "0DTJ4ZZ")),
        # Two notes of one admission, joined in note_seq order.
        Document("2003", "First.\n\nSecond.", ("J18.9",)),
    ]


def test_icd9_admissions(mimic4_root: Path) -> None:
    assert read_mimic4(mimic4_root, icd_version=9) == [
        Document("2002", "ICD-9 era.", ("401.9", "38.93")),
    ]
    assert read_mimic4(mimic4_root, icd_version=9, codes="P")[0].codes == ("38.93",)


def test_codes_and_subjects(mimic4_root: Path) -> None:
    codes, subjects = read_mimic4_codes(mimic4_root, 10, "D")

    assert codes == {"2001": ("E11.9", "I10"), "2003": ("J18.9",), "2004": ("N17.9",)}
    assert subjects == {"2001": "1", "2003": "3", "2004": "4"}
    with pytest.raises(ValueError, match="icd_version"):
        read_mimic4_codes(mimic4_root, 11)


def test_split_file(mimic4_root: Path, tmp_path: Path) -> None:
    split_file = tmp_path / "splits.csv"
    split_file.write_text("hadm_id,split\n2001,train\n2003,val\n2002,train\n")

    assert [doc.id for doc in read_mimic4(mimic4_root, "val", split_file=split_file)] == ["2003"]
    train = load_corpus("mimic4", mimic4_root, "train", split_file=split_file)
    assert [doc.id for doc in train] == ["2001"]
    with pytest.raises(ValueError, match=r"'test' is not in .*\['train', 'val'\]"):
        read_mimic4(mimic4_root, "test", split_file=split_file)


def test_patient_split_keeps_a_patients_admissions_together() -> None:
    # 10 patients, patient p has p + 1 admissions.
    subject_of = {f"{p}{a}": f"p{p}" for p in range(10) for a in range(p + 1)}

    split_of = patient_split(subject_of, seed=7)

    patients_in = {
        name: {subject_of[adm] for adm, s in split_of.items() if s == name}
        for name in ("train", "dev", "test")
    }
    assert [len(patients_in[name]) for name in ("train", "dev", "test")] == [8, 1, 1]
    for subject in set(subject_of.values()):
        assert len({split_of[adm] for adm, s in subject_of.items() if s == subject}) == 1
    # Same patients and seed, any input order: same split.
    assert patient_split(dict(reversed(list(subject_of.items()))), seed=7) == split_of
    assert patient_split(subject_of, seed=8) != split_of


def test_patient_split_ratios() -> None:
    subject_of = {str(i): str(i) for i in range(4)}

    counts = list(patient_split(subject_of, ratios=(0.5, 0.25, 0.25)).values())
    assert sorted(counts) == ["dev", "test", "train", "train"]
    with pytest.raises(ValueError, match="sum to 1"):
        patient_split(subject_of, ratios=(0.5, 0.5, 0.5))


def test_seeded_split_through_the_reader(mimic4_root: Path) -> None:
    parts = {
        name: [doc.id for doc in read_mimic4(mimic4_root, name, ratios=(0.34, 0.33, 0.33))]
        for name in ("train", "dev", "test")
    }

    assert sorted(doc_id for ids in parts.values() for doc_id in ids) == ["2001", "2003"]
    with pytest.raises(ValueError, match="split must be one of"):
        read_mimic4(mimic4_root, "val")


def test_separate_note_module_and_missing_table(mimic4_root: Path, tmp_path: Path) -> None:
    note_root = tmp_path / "mimic-iv-note"
    (mimic4_root / "note").rename(tmp_path / "moved")
    (note_root).mkdir()
    (tmp_path / "moved").rename(note_root / "note")

    assert len(read_mimic4(mimic4_root, note_root=note_root)) == 2
    with pytest.raises(CorpusLayoutError, match=r"note/discharge\.csv\.gz or"):
        read_mimic4(mimic4_root)
