"""One place that knows how ICD code strings are written.

Every reader, the catalogue, the metrics and the service normalise codes through here, so a code
read from CodiEsp (`n44.8`), MIMIC (`4019`) or a coder's feedback (`N44.8 `) compares equal.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from enum import StrEnum


class CodeSystem(StrEnum):
    ICD10_CM = "icd10cm"
    ICD10_PCS = "icd10pcs"
    ICD9_CM = "icd9cm"  # diagnoses
    ICD9_PCS = "icd9pcs"  # ICD-9-CM volume 3 procedures


# How bundle.json's `code_system` joins several systems: `icd10cm+icd10pcs`.
SYSTEM_SEPARATOR = "+"


def format_code_systems(systems: Iterable[CodeSystem]) -> str:
    """[ICD10_CM, ICD10_PCS] -> `icd10cm+icd10pcs`, as bundle.json stores it."""
    return SYSTEM_SEPARATOR.join(str(system) for system in systems)


def parse_code_systems(declared: str) -> list[CodeSystem]:
    """`icd10cm+icd10pcs` -> [ICD10_CM, ICD10_PCS]; ValueError names a part that is no system."""
    systems = []
    for part in declared.split(SYSTEM_SEPARATOR):
        try:
            systems.append(CodeSystem(part.strip().lower()))
        except ValueError:
            known = ", ".join(system.value for system in CodeSystem)
            raise ValueError(
                f"code_system {declared!r} names {part!r}, which is not one of {known} (join "
                f"several with {SYSTEM_SEPARATOR!r})"
            ) from None
    return systems


_STRIP = re.compile(r"[\s.]")


def compact(code: str) -> str:
    """Upper case without dots or white space: `n44.8 ` -> `N448`."""
    return _STRIP.sub("", code).upper()


def normalize_icd10cm(code: str) -> str:
    """ICD-10-CM in its dotted form: a dot after the three-character category (`N44.8`)."""
    raw = compact(code)
    return raw if len(raw) <= 3 else f"{raw[:3]}.{raw[3:]}"


def normalize_icd10pcs(code: str) -> str:
    """ICD-10-PCS: seven characters, upper case, no dot (`BW03ZZZ`)."""
    return compact(code)


def normalize_icd9_diagnosis(code: str) -> str:
    """ICD-9-CM diagnosis with its dot restored.

    Numeric and V codes take the dot after three characters (`4019` -> `401.9`, `V4501` ->
    `V45.01`); E codes after four (`E8490` -> `E849.0`).
    """
    raw = compact(code)
    split = 4 if raw.startswith("E") else 3
    return raw if len(raw) <= split else f"{raw[:split]}.{raw[split:]}"


def normalize_icd9_procedure(code: str) -> str:
    """ICD-9-CM procedure (volume 3): the dot after two digits (`3893` -> `38.93`)."""
    raw = compact(code)
    return raw if len(raw) <= 2 else f"{raw[:2]}.{raw[2:]}"


_NORMALIZERS = {
    CodeSystem.ICD10_CM: normalize_icd10cm,
    CodeSystem.ICD10_PCS: normalize_icd10pcs,
    CodeSystem.ICD9_CM: normalize_icd9_diagnosis,
    CodeSystem.ICD9_PCS: normalize_icd9_procedure,
}


def normalize(code: str, system: CodeSystem | str) -> str:
    """Normalise `code` as written in `system`; raises ValueError on an empty code."""
    if not code or not code.strip():
        raise ValueError("empty ICD code")
    return _NORMALIZERS[CodeSystem(system)](code)
