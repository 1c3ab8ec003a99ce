"""Corpus readers behind one registry: `load_corpus("codiesp", path, "train", lang="en")`.

Every reader yields `Document`s with normalised codes; the registry maps a corpus name to its
reader so the CLI and training code name corpora, not modules.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from training.corpora.base import Document, EvidenceReference, EvidenceSpan
from training.corpora.codiesp import (
    iter_codiesp,
    locate_codiesp,
    read_codiesp,
    read_codiesp_references,
)
from training.corpora.errors import CorpusFormatError, CorpusLayoutError
from training.corpora.jsonl import iter_jsonl, read_jsonl, write_jsonl
from training.corpora.mimic3 import iter_mimic3, read_mimic3
from training.corpora.mimic4 import iter_mimic4, patient_split, read_mimic4
from training.corpora.subsets import most_frequent_codes, restrict_codes, top_k_codes

__all__ = [
    "CORPORA",
    "CorpusFormatError",
    "CorpusLayoutError",
    "Document",
    "EvidenceReference",
    "EvidenceSpan",
    "iter_codiesp",
    "iter_corpus",
    "iter_jsonl",
    "iter_mimic3",
    "iter_mimic4",
    "load_corpus",
    "locate_codiesp",
    "most_frequent_codes",
    "patient_split",
    "read_codiesp",
    "read_codiesp_references",
    "read_jsonl",
    "read_mimic3",
    "read_mimic4",
    "restrict_codes",
    "top_k_codes",
    "write_jsonl",
]

_Reader = Callable[..., Iterator[Document]]


def _required_path(name: str, path: Path | str | None) -> Path:
    if path is None:
        raise ValueError(f"corpus {name!r} needs a path to its folder")
    return Path(path)


def _codiesp(path: Path | str | None, split: str | None, **options: Any) -> Iterator[Document]:
    if split is None:
        raise ValueError("corpus 'codiesp' needs a split: train, dev, test or background")
    # With no path, locate_codiesp looks in the usual places and downloads as a last resort.
    return iter_codiesp(locate_codiesp(path), split, **options)


def _mimic3(path: Path | str | None, split: str | None, **options: Any) -> Iterator[Document]:
    return iter_mimic3(_required_path("mimic3", path), split, **options)


def _mimic4(path: Path | str | None, split: str | None, **options: Any) -> Iterator[Document]:
    return iter_mimic4(_required_path("mimic4", path), split, **options)


def _jsonl(path: Path | str | None, split: str | None, **options: Any) -> Iterator[Document]:
    file = _required_path("jsonl", path)
    if file.is_dir():
        if split is None:
            raise ValueError(f"{file} is a folder: name a split to read {file}/{{split}}.jsonl")
        file = file / f"{split}.jsonl"
    return iter_jsonl(file, **options)


_READERS: dict[str, _Reader] = {
    "codiesp": _codiesp,
    "mimic3": _mimic3,
    "mimic4": _mimic4,
    "jsonl": _jsonl,
}
CORPORA = tuple(_READERS)


def iter_corpus(
    name: str, path: Path | str | None, split: str | None = None, **options: Any
) -> Iterator[Document]:
    """Stream corpus `name` ("codiesp", "mimic3", "mimic4", "jsonl"); options go to its reader.

    For "jsonl", `path` is the file itself or a folder holding `{split}.jsonl`.
    """
    reader = _READERS.get(name)
    if reader is None:
        raise ValueError(f"unknown corpus {name!r}; valid names: {', '.join(CORPORA)}")
    return reader(path, split, **options)


def load_corpus(
    name: str, path: Path | str | None, split: str | None = None, **options: Any
) -> list[Document]:
    """`iter_corpus` as a list."""
    return list(iter_corpus(name, path, split, **options))
