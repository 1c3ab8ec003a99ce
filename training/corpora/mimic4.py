"""MIMIC-IV discharge notes with their ICD-9 or ICD-10 codes, and patient-level splits.

Owns `note/discharge`, `hosp/diagnoses_icd` and `hosp/procedures_icd` parsing, the split file
(`hadm_id,split`) and the seeded split that keeps every admission of a patient together.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Literal

from model.codes import CodeSystem
from training.corpora.base import Document
from training.corpora.errors import CorpusFormatError, CorpusLayoutError
from training.corpora.tables import (
    codes_by_seq,
    find_table,
    iter_columns,
    parse_admission_id,
    unique,
)

CodeSet = Literal["D", "P", "DP"]

NOTE_COLUMNS = (
    "note_id",
    "subject_id",
    "hadm_id",
    "note_type",
    "note_seq",
    "charttime",
    "storetime",
    "text",
)
DIAGNOSIS_COLUMNS = ("subject_id", "hadm_id", "seq_num", "icd_code", "icd_version")
PROCEDURE_COLUMNS = ("subject_id", "hadm_id", "seq_num", "chartdate", "icd_code", "icd_version")
SPLIT_NAMES = ("train", "dev", "test")

# (code set letter, ICD version) -> how the codes are written.
_SYSTEMS = {
    ("D", 9): CodeSystem.ICD9_CM,
    ("P", 9): CodeSystem.ICD9_PCS,
    ("D", 10): CodeSystem.ICD10_CM,
    ("P", 10): CodeSystem.ICD10_PCS,
}
_TABLES = {"D": "diagnoses_icd", "P": "procedures_icd"}


def patient_split(
    subject_of: Mapping[str, str],
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
) -> dict[str, str]:
    """Admission id -> "train" / "dev" / "test", with all admissions of a patient in one split.

    `subject_of` maps admission id to patient (subject) id. Patients are sorted, shuffled with
    `seed` and cut by `ratios`, so the result depends only on the patients and the seed, never
    on the mapping's order.
    """
    if len(ratios) != len(SPLIT_NAMES) or any(ratio < 0 for ratio in ratios):
        raise ValueError(f"ratios must be {len(SPLIT_NAMES)} non-negative numbers, not {ratios}")
    if not math.isclose(sum(ratios), 1.0, abs_tol=1e-6):
        raise ValueError(f"ratios must sum to 1, not {sum(ratios)}")
    subjects = sorted(set(subject_of.values()))
    random.Random(seed).shuffle(subjects)
    # Cumulative cut points, rounded once each, so the parts always add up to every patient.
    cuts = [round(len(subjects) * sum(ratios[: index + 1])) for index in range(len(ratios))]
    split_of_subject: dict[str, str] = {}
    start = 0
    for name, cut in zip(SPLIT_NAMES, cuts, strict=True):
        for subject in subjects[start:cut]:
            split_of_subject[subject] = name
        start = cut
    return {admission: split_of_subject[subject] for admission, subject in subject_of.items()}


def read_mimic4_codes(
    root: Path | str, icd_version: int = 10, codes: CodeSet = "DP"
) -> tuple[dict[str, tuple[str, ...]], dict[str, str]]:
    """(hadm_id -> codes of `icd_version`, hadm_id -> subject_id) from `{root}/hosp`.

    Codes are diagnoses then procedures, each by seq_num, dots restored (ICD-10-PCS has none).
    Only admissions with at least one code of that version appear in either mapping.
    """
    if icd_version not in (9, 10):
        raise ValueError(f"icd_version must be 9 or 10, not {icd_version!r}")
    if codes not in ("D", "P", "DP"):
        raise ValueError(f"codes must be 'D', 'P' or 'DP', not {codes!r}")
    hosp = Path(root) / "hosp"
    merged: dict[str, list[str]] = {}
    subject_of: dict[str, str] = {}
    columns = ("subject_id", "hadm_id", "seq_num", "icd_code", "icd_version")
    for letter in codes:
        rows = iter_columns(find_table(hosp, _TABLES[letter]), columns)
        versioned = _of_version(rows, str(icd_version), subject_of)
        for admission, admission_codes in codes_by_seq(
            versioned, _SYSTEMS[(letter, icd_version)]
        ).items():
            merged.setdefault(admission, []).extend(admission_codes)
    return {admission: unique(codes) for admission, codes in merged.items()}, subject_of


def _of_version(
    rows: Iterable[tuple[str, ...]], version: str, subject_of: dict[str, str]
) -> Iterator[tuple[str, str, str]]:
    """(hadm_id, seq_num, icd_code) of the rows of `version`, noting each coded admission's
    patient in `subject_of` on the way (the code tables are the cheapest place to learn it)."""
    for subject, hadm, seq_num, code, code_version in rows:
        if code_version.strip() != version:
            continue
        admission = parse_admission_id(hadm)
        if admission is not None and code.strip():
            subject_of[admission] = subject.strip()
        yield hadm, seq_num, code


def read_split_file(path: Path | str) -> dict[str, str]:
    """hadm_id -> split name from a CSV with columns `hadm_id,split`."""
    path = Path(path)
    if not path.is_file():
        raise CorpusLayoutError(f"missing split file {path}: expected a CSV with hadm_id,split")
    split_of: dict[str, str] = {}
    for hadm, split in iter_columns(path, ("hadm_id", "split")):
        admission = parse_admission_id(hadm)
        if admission is not None:
            split_of[admission] = split.strip()
    return split_of


def iter_mimic4(
    root: Path | str,
    split: str | None = None,
    *,
    icd_version: int = 10,
    codes: CodeSet = "DP",
    split_file: Path | str | None = None,
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    note_root: Path | str | None = None,
) -> Iterator[Document]:
    """MIMIC-IV discharge notes as Documents, sorted by hadm_id.

    Tables: `{note_root or root}/note/discharge` and `{root}/hosp/{diagnoses,procedures}_icd`
    (`.csv.gz` or `.csv`; MIMIC-IV-Note ships as its own module, hence `note_root`). Only
    admissions with a discharge note and at least one code of `icd_version` are yielded; an
    admission's notes are joined in note_seq order by a blank line.

    `split` None takes every admission. Otherwise admissions come from `split_file` (a CSV with
    columns hadm_id,split, matched on the split name as written there) or, without one, from
    `patient_split(..., ratios, seed)` over the coded admissions ("train", "dev", "test").
    Memory: notes are streamed; the texts of the wanted admissions are held until the end.
    """
    root = Path(root)
    if not root.is_dir():
        raise CorpusLayoutError(
            f"missing MIMIC-IV folder {root}: expected hosp/diagnoses_icd, hosp/procedures_icd "
            "and note/discharge (.csv.gz or .csv) under it"
        )
    codes_by_admission, subject_of = read_mimic4_codes(root, icd_version, codes)
    wanted = set(codes_by_admission)
    if split is not None:
        if split_file is not None:
            split_of = read_split_file(split_file)
            if split not in set(split_of.values()):
                present = sorted(set(split_of.values()))
                raise ValueError(f"split {split!r} is not in {split_file} (it has {present})")
        elif split in SPLIT_NAMES:
            split_of = patient_split(subject_of, ratios, seed)
        else:
            raise ValueError(
                f"split must be one of {SPLIT_NAMES} without a split file, not {split!r}"
            )
        wanted = {admission for admission in wanted if split_of.get(admission) == split}

    notes: dict[str, list[tuple[int, str, str]]] = {}
    discharge = find_table(Path(note_root or root) / "note", "discharge")
    columns = ("note_id", "hadm_id", "note_seq", "text")
    for note_id, hadm, note_seq, text in iter_columns(discharge, columns):
        admission = parse_admission_id(hadm)
        if admission in wanted:
            try:
                seq = int(note_seq)
            except ValueError:
                raise CorpusFormatError(
                    f"{discharge}: note {note_id} has note_seq {note_seq!r}, expected an integer"
                ) from None
            notes.setdefault(admission, []).append((seq, note_id, text.strip()))
    for admission in sorted(notes, key=int):
        text = "\n\n".join(note for *_, note in sorted(notes[admission]) if note)
        yield Document(id=admission, text=text, codes=codes_by_admission[admission])


def read_mimic4(
    root: Path | str,
    split: str | None = None,
    *,
    icd_version: int = 10,
    codes: CodeSet = "DP",
    split_file: Path | str | None = None,
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    note_root: Path | str | None = None,
) -> list[Document]:
    """`iter_mimic4` as a list."""
    return list(
        iter_mimic4(
            root,
            split,
            icd_version=icd_version,
            codes=codes,
            split_file=split_file,
            ratios=ratios,
            seed=seed,
            note_root=note_root,
        )
    )
