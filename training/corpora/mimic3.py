"""MIMIC-III discharge summaries with their ICD-9 codes, read the way CAML prepares them.

Owns NOTEEVENTS / DIAGNOSES_ICD / PROCEDURES_ICD parsing, joining a report with its addenda,
CAML's published split files (`{split}_{full|50}_hadm_ids.csv`) and its top-50 label set.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Literal

from model.codes import CodeSystem
from training.corpora.base import Document
from training.corpora.errors import CorpusLayoutError
from training.corpora.subsets import most_frequent_codes
from training.corpora.tables import (
    codes_by_seq,
    find_table,
    iter_columns,
    parse_admission_id,
    read_id_list,
    unique,
)

CodeSet = Literal["D", "P", "DP"]
Subset = Literal["full", "50"]

NOTE_COLUMNS = (
    "ROW_ID",
    "SUBJECT_ID",
    "HADM_ID",
    "CHARTDATE",
    "CHARTTIME",
    "STORETIME",
    "CATEGORY",
    "DESCRIPTION",
    "CGID",
    "ISERROR",
    "TEXT",
)
CODE_COLUMNS = ("ROW_ID", "SUBJECT_ID", "HADM_ID", "SEQ_NUM", "ICD9_CODE")
DISCHARGE_CATEGORY = "Discharge summary"
TOP_K = 50  # CAML's "MIMIC-III 50" label set

# Per code set letter: the table holding it and how its codes are written.
_TABLES = {"D": ("DIAGNOSES_ICD", CodeSystem.ICD9_CM), "P": ("PROCEDURES_ICD", CodeSystem.ICD9_PCS)}


def read_mimic3_codes(root: Path | str, codes: CodeSet = "DP") -> dict[str, tuple[str, ...]]:
    """HADM_ID -> its ICD-9 codes with dots restored: diagnoses, then procedures, each by SEQ_NUM.

    Rows with an empty ICD9_CODE are dropped. The code tables are small (under a million rows)
    and are loaded whole.
    """
    if codes not in ("D", "P", "DP"):
        raise ValueError(f"codes must be 'D', 'P' or 'DP', not {codes!r}")
    root = Path(root)
    merged: dict[str, list[str]] = {}
    for letter in codes:
        table, system = _TABLES[letter]
        rows = iter_columns(find_table(root, table), ("HADM_ID", "SEQ_NUM", "ICD9_CODE"))
        for admission, admission_codes in codes_by_seq(rows, system).items():
            merged.setdefault(admission, []).extend(admission_codes)
    return {admission: unique(codes) for admission, codes in merged.items()}


def iter_mimic3(
    root: Path | str,
    split: str | None = None,
    *,
    codes: CodeSet = "DP",
    subset: Subset = "full",
    splits_dir: Path | str | None = None,
) -> Iterator[Document]:
    """Discharge summaries of MIMIC-III admissions as Documents, sorted by HADM_ID.

    `root` holds NOTEEVENTS, DIAGNOSES_ICD and PROCEDURES_ICD (`.csv.gz` or `.csv`). An
    admission's text is its discharge report(s) then its addenda, each in CHARTDATE/ROW_ID
    order, joined by a blank line; ISERROR=1 rows are skipped. Only admissions with a discharge
    summary and at least one selected code are yielded.

    `split` ("train", "dev", "test") reads CAML's `{split}_{subset}_hadm_ids.csv` from
    `splits_dir` (default `root`); None takes every admission. `subset` "50" also keeps only
    CAML's label set: the 50 codes most frequent over all admissions with a discharge summary.

    Memory: NOTEEVENTS is streamed row by row; because it is not sorted by HADM_ID, the texts
    of the wanted admissions' discharge summaries (not other notes) are held until the end.
    """
    if subset not in ("full", "50"):
        raise ValueError(f"subset must be 'full' or '50', not {subset!r}")
    root = Path(root)
    if not root.is_dir():
        raise CorpusLayoutError(
            f"missing MIMIC-III folder {root}: expected NOTEEVENTS, DIAGNOSES_ICD and "
            "PROCEDURES_ICD as .csv.gz or .csv in it"
        )
    codes_by_admission = read_mimic3_codes(root, codes)
    listed: list[str] | None = None
    if split is not None:
        listed = read_id_list(Path(splits_dir or root) / f"{split}_{subset}_hadm_ids.csv")
    wanted = set(codes_by_admission) if listed is None else set(listed) & set(codes_by_admission)

    notes, with_summary = _collect_discharge_summaries(find_table(root, "NOTEEVENTS"), wanted)
    if subset == "50":
        labelled = (
            Document(admission, "", codes_by_admission[admission])
            for admission in sorted(with_summary & set(codes_by_admission))
        )
        kept = frozenset(most_frequent_codes(labelled, TOP_K))
        codes_by_admission = {
            admission: tuple(code for code in admission_codes if code in kept)
            for admission, admission_codes in codes_by_admission.items()
        }
    if listed is not None:
        missing = len(set(listed) - set(notes))
        if missing:
            warnings.warn(
                f"{missing} of {len(set(listed))} admissions listed for split {split!r} have no "
                "discharge summary or no codes in this MIMIC-III copy; they are skipped",
                stacklevel=2,
            )
    for admission in sorted(notes, key=int):
        admission_codes = codes_by_admission[admission]
        if admission_codes:
            yield Document(id=admission, text=_join(notes[admission]), codes=admission_codes)


def read_mimic3(
    root: Path | str,
    split: str | None = None,
    *,
    codes: CodeSet = "DP",
    subset: Subset = "full",
    splits_dir: Path | str | None = None,
) -> list[Document]:
    """`iter_mimic3` as a list."""
    return list(iter_mimic3(root, split, codes=codes, subset=subset, splits_dir=splits_dir))


# One discharge-summary row: (is an addendum, CHARTDATE, ROW_ID, text); sorting gives CAML order.
_Note = tuple[bool, str, int, str]


def _collect_discharge_summaries(
    path: Path, wanted: set[str]
) -> tuple[dict[str, list[_Note]], set[str]]:
    """The wanted admissions' discharge-summary rows, and every admission having one."""
    notes: dict[str, list[_Note]] = {}
    with_summary: set[str] = set()
    columns = ("ROW_ID", "HADM_ID", "CHARTDATE", "CATEGORY", "DESCRIPTION", "ISERROR", "TEXT")
    for row_id, hadm, chartdate, category, description, iserror, text in iter_columns(
        path, columns
    ):
        if category.strip() != DISCHARGE_CATEGORY or iserror.strip() == "1":
            continue
        admission = parse_admission_id(hadm)
        if admission is None:
            continue
        with_summary.add(admission)
        if admission in wanted:
            # Anything but the report itself ("Addendum" in MIMIC-III) follows the report.
            is_addendum = description.strip() != "Report"
            note = (is_addendum, chartdate.strip(), int(row_id), text.strip())
            notes.setdefault(admission, []).append(note)
    return notes, with_summary


def _join(notes: list[_Note]) -> str:
    return "\n\n".join(text for *_, text in sorted(notes) if text)
