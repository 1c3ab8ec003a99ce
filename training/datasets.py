"""Which corpus, split and code set a run reads, described once and stored with every model.

A `CorpusSpec` turns command-line options into reader calls, tells which code system each code is
in (for descriptions), and fingerprints the documents a model was trained on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, cast

from model.bundle import fingerprint_documents
from model.catalogue import catalogue_for
from model.codes import CodeSystem, format_code_systems
from model.metadata import CodeEntry, CorpusInfo
from training.corpora import load_corpus
from training.corpora.base import Document


@dataclass(frozen=True)
class CorpusSpec:
    name: str  # codiesp | mimic3 | mimic4 | jsonl
    path: str
    lang: str = "en"  # codiesp only
    codes: str = "D"  # codiesp: D (ICD-10-CM), P (ICD-10-PCS) or DP
    icd_version: int = 10  # mimic4 only
    split_file: str | None = None  # mimic3 / mimic4

    def reader_options(self) -> dict[str, Any]:
        if self.name == "codiesp":
            return {"lang": self.lang, "codes": self.codes}
        if self.name == "mimic4":
            return {"icd_version": self.icd_version, "split_file": self.split_file}
        if self.name == "mimic3":
            # CAML publishes one file per split: here split_file names the folder holding them.
            return {"splits_dir": self.split_file}
        return {}

    def load(self, split: str) -> list[Document]:
        return load_corpus(self.name, Path(self.path), split, **self.reader_options())

    @property
    def code_systems(self) -> tuple[CodeSystem, ...]:
        if self.name == "codiesp":
            systems = {"D": CodeSystem.ICD10_CM, "P": CodeSystem.ICD10_PCS}
            return tuple(systems[letter] for letter in self.codes)
        if self.name == "mimic4" and self.icd_version == 10:
            return (CodeSystem.ICD10_CM, CodeSystem.ICD10_PCS)
        if self.name in ("mimic3", "mimic4"):
            return (CodeSystem.ICD9_CM, CodeSystem.ICD9_PCS)
        return (CodeSystem.ICD10_CM,)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def corpus_info(self, split: str, documents: Sequence[Document]) -> CorpusInfo:
        """bundle.json's `corpus` section: this spec, the split read and its fingerprint."""
        return cast(
            CorpusInfo, {**self.to_dict(), "split": split, "fingerprint": fingerprint(documents)}
        )

    @property
    def code_system(self) -> str:
        """bundle.json's `code_system`: the systems joined by '+'."""
        return format_code_systems(self.code_systems)


def system_of(code: str, systems: Sequence[CodeSystem]) -> CodeSystem:
    """The system a normalised code belongs to, when a corpus mixes diagnoses and procedures.

    ICD-10-PCS codes are seven characters without a dot; ICD-9 procedures have two digits before
    their dot, diagnoses three (four for E codes).
    """
    if len(systems) == 1:
        return systems[0]
    if CodeSystem.ICD10_PCS in systems and len(code) == 7 and "." not in code:
        return CodeSystem.ICD10_PCS
    if CodeSystem.ICD9_PCS in systems and (
        code.find(".") == 2 or (code.isdigit() and len(code) == 2)
    ):
        return CodeSystem.ICD9_PCS
    return systems[0]


def describe_codes(codes: Sequence[str], systems: Sequence[CodeSystem]) -> list[str]:
    """Catalogue descriptions ("" where the catalogue has none: callers show the code alone)."""
    return [catalogue_for(system_of(code, systems)).describe(code) for code in codes]


def code_entries(codes: Sequence[str], systems: Sequence[CodeSystem]) -> list[CodeEntry]:
    """bundle.json's `codes`: each code with its catalogue description, in the order given."""
    return [
        CodeEntry(code=code, description=description)
        for code, description in zip(codes, describe_codes(codes, systems), strict=True)
    ]


def code_counts(documents: Sequence[Document]) -> Counter[str]:
    """In how many documents each code occurs."""
    return Counter(code for document in documents for code in set(document.codes))


def label_order(documents: Sequence[Document]) -> list[str]:
    """The model's code list: every code seen in training, most frequent first, ties by code."""
    counts = code_counts(documents)
    return sorted(counts, key=lambda code: (-counts[code], code))


def fingerprint(documents: Sequence[Document]) -> str:
    return fingerprint_documents(
        [document.id for document in documents],
        [document.text for document in documents],
        [list(document.codes) for document in documents],
    )
