"""CodiEsp (CLEF eHealth 2020, Spanish clinical cases coded in ICD-10): reader and locator.

Owns the published folder layout, the D/P/X annotation files, their evidence offsets, and
finding (or, as a last resort, downloading from Zenodo) a copy of the corpus on disk.
"""

from __future__ import annotations

import os
import sys
import urllib.request
import warnings
import zipfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from model.codes import CodeSystem, normalize
from training.corpora.base import Document, EvidenceReference, EvidenceSpan
from training.corpora.errors import CorpusFormatError, CorpusLayoutError
from training.corpora.tables import unique

Lang = Literal["es", "en"]
CodeSet = Literal["D", "P", "DP"]

SPLITS = ("train", "dev", "test", "background")
UNANNOTATED_SPLITS = frozenset({"background"})  # text only: no D/P/X files

CODIESP_DOI = "10.5281/zenodo.3837305"
CODIESP_URL = "https://zenodo.org/records/3837305/files/final_dataset_v4_to_publish.zip?download=1"
CODIESP_ENV = "PLANT_ICD_CODIESP"

# Per code set letter: the X label naming it, its file suffix and the code system it is written in.
_KINDS: dict[str, tuple[str, CodeSystem]] = {
    "D": ("DIAGNOSTICO", CodeSystem.ICD10_CM),
    "P": ("PROCEDIMIENTO", CodeSystem.ICD10_PCS),
}

_LAYOUT = (
    "{root}/{split}/text_files/*.txt (Spanish), {root}/{split}/text_files_en/*.txt (English), "
    "{root}/{split}/{split}D.tsv, {split}P.tsv and {split}X.tsv for train/dev/test"
)


def iter_codiesp(
    root: Path | str, split: str, *, lang: Lang = "es", codes: CodeSet = "DP"
) -> Iterator[Document]:
    """Stream one CodiEsp split as Documents, sorted by document id.

    `lang` "es" reads the original Spanish text as written (only trailing white space removed,
    so the offsets hold) and attaches evidence spans from `{split}X.tsv` (one EvidenceSpan per
    part of a discontinuous mention, the parts sharing `part_of`; the corpus's few zero-width
    parts, such as `1320 1320`, are dropped). `lang` "en" reads the machine translation, one
    sentence per line joined by single spaces; its spans are always empty because the X offsets
    point into the Spanish text. `codes` picks diagnoses ("D", ICD-10-CM), procedures ("P",
    ICD-10-PCS) or both ("DP", diagnoses first). The background split has no codes.
    """
    if lang not in ("es", "en"):
        raise ValueError(f"lang must be 'es' or 'en', not {lang!r}")
    if codes not in ("D", "P", "DP"):
        raise ValueError(f"codes must be 'D', 'P' or 'DP', not {codes!r}")
    split_dir = _split_dir(Path(root), split)
    text_paths = _text_paths(split_dir, lang)

    codes_by_doc: dict[str, list[str]] = {}
    mentions_by_doc: dict[str, list[_Mention]] = {}
    if split not in UNANNOTATED_SPLITS:
        for letter in codes:
            code_file = split_dir / f"{split}{letter}.tsv"
            for doc_id, code in _read_code_file(code_file, _KINDS[letter][1], text_paths):
                codes_by_doc.setdefault(doc_id, []).append(code)
        if lang == "es":
            x_file = split_dir / f"{split}X.tsv"
            for mention in _read_mentions(x_file, codes, text_paths):
                mentions_by_doc.setdefault(mention.doc_id, []).append(mention)

    for doc_id in sorted(text_paths):
        text = _read_text(text_paths[doc_id], lang)
        doc_codes = unique(codes_by_doc.get(doc_id, ()))
        spans = _spans(mentions_by_doc.get(doc_id, []), text, doc_codes)
        yield Document(id=doc_id, text=text, codes=doc_codes, spans=spans)


def read_codiesp(
    root: Path | str, split: str, *, lang: Lang = "es", codes: CodeSet = "DP"
) -> list[Document]:
    """`iter_codiesp` as a list (the corpus is small: 500 train, 250 dev documents)."""
    return list(iter_codiesp(root, split, lang=lang, codes=codes))


def read_codiesp_references(
    root: Path | str, split: str, *, codes: CodeSet = "DP"
) -> list[EvidenceReference]:
    """The coders' evidence in one split: every `{split}X.tsv` row as an EvidenceReference.

    Rows come in file order, one per reference (a code may have several in a note), with their
    parts as data: the offsets point into the Spanish text as `iter_codiesp(lang="es")` reads it.
    `codes` keeps diagnoses ("D"), procedures ("P") or both ("DP"). Zero-width parts (a few in
    the corpus, such as `1320 1320`) are dropped, and a row left with no part is skipped; an
    offset outside its note's text is a CorpusFormatError. Unlike `iter_codiesp`, a reference
    is kept even if its code is missing from the D/P files: the X file alone is the gold the
    CodiEsp-X evaluation reads.
    """
    if codes not in ("D", "P", "DP"):
        raise ValueError(f"codes must be 'D', 'P' or 'DP', not {codes!r}")
    if split in UNANNOTATED_SPLITS:
        raise ValueError(f"the {split} split has no evidence annotations")
    split_dir = _split_dir(Path(root), split)
    text_paths = _text_paths(split_dir, "es")
    text_lengths: dict[str, int] = {}
    references: list[EvidenceReference] = []
    for mention in _read_mentions(split_dir / f"{split}X.tsv", codes, text_paths):
        if mention.doc_id not in text_lengths:
            text_lengths[mention.doc_id] = len(_read_text(text_paths[mention.doc_id], "es"))
        _check_parts(mention, text_lengths[mention.doc_id])
        parts = tuple(part for part in mention.parts if part[0] < part[1])
        if parts:
            references.append(
                EvidenceReference(
                    note_id=mention.doc_id,
                    label=mention.letter,
                    code=mention.code,
                    parts=parts,
                    text=mention.evidence,
                )
            )
    return references


def _split_dir(root: Path, split: str) -> Path:
    split_dir = root / split
    if not split_dir.is_dir():
        present = (
            sorted(path.name for path in root.iterdir() if path.is_dir()) if root.is_dir() else []
        )
        raise CorpusLayoutError(
            f"missing CodiEsp split folder {split_dir} (folders present: {present}); "
            f"expected {_LAYOUT}"
        )
    return split_dir


def _text_paths(split_dir: Path, lang: Lang) -> dict[str, Path]:
    """Note id -> text file of one split in one language."""
    text_dir = split_dir / ("text_files" if lang == "es" else "text_files_en")
    if not text_dir.is_dir():
        raise CorpusLayoutError(f"missing CodiEsp text folder {text_dir}; expected {_LAYOUT}")
    return {path.stem: path for path in text_dir.glob("*.txt")}


def _read_text(path: Path, lang: Lang) -> str:
    if lang == "en":
        with path.open(encoding="utf-8") as stream:
            return " ".join(line.strip() for line in stream if line.strip()).strip()
    # newline="" keeps every character where the X offsets expect it; only trailing white
    # space goes, which cannot move an offset.
    with path.open(encoding="utf-8", newline="") as stream:
        return stream.read().rstrip()


def _read_tsv(path: Path, min_fields: int) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of each non-blank line; CorpusLayoutError if the file is missing."""
    if not path.is_file():
        raise CorpusLayoutError(f"missing CodiEsp annotation file {path}; expected {_LAYOUT}")
    with path.open(encoding="utf-8", newline="") as stream:
        for line_no, line in enumerate(stream, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split("\t")
            if len(fields) < min_fields:
                raise CorpusFormatError(
                    f"{path} line {line_no}: {len(fields)} tab-separated field(s), "
                    f"expected {min_fields}"
                )
            yield line_no, fields


def _check_known(path: Path, line_no: int, doc_id: str, text_paths: dict[str, Path]) -> None:
    if doc_id not in text_paths:
        raise CorpusFormatError(
            f"{path} line {line_no}: document {doc_id!r} has no text file in the split"
        )


def _read_code_file(
    path: Path, system: CodeSystem, text_paths: dict[str, Path]
) -> Iterator[tuple[str, str]]:
    for line_no, fields in _read_tsv(path, 2):
        doc_id, code = fields[0].strip(), fields[1]
        _check_known(path, line_no, doc_id, text_paths)
        yield doc_id, normalize(code, system)


@dataclass(frozen=True, slots=True)
class _Mention:
    """One X row: a code's evidence, possibly in several parts, before checking it against text."""

    path: Path
    line_no: int
    doc_id: str
    letter: str  # "D" or "P"
    code: str
    evidence: str  # the reference text as the file spells it
    parts: list[tuple[int, int]]


def _read_mentions(path: Path, codes: CodeSet, text_paths: dict[str, Path]) -> Iterator[_Mention]:
    letters = {label: letter for letter, (label, _) in _KINDS.items()}
    for line_no, fields in _read_tsv(path, 5):
        doc_id, label, code, offsets = fields[0].strip(), fields[1].strip(), fields[2], fields[4]
        if label not in letters:
            raise CorpusFormatError(
                f"{path} line {line_no}: label {label!r}, expected one of {sorted(letters)}"
            )
        _check_known(path, line_no, doc_id, text_paths)
        letter = letters[label]
        if letter in codes:
            parts = _parse_offsets(path, line_no, offsets)
            code = normalize(code, _KINDS[letter][1])
            yield _Mention(path, line_no, doc_id, letter, code, fields[3], parts)


def _parse_offsets(path: Path, line_no: int, offsets: str) -> list[tuple[int, int]]:
    """`"2787 2801;2810 2823"` -> [(2787, 2801), (2810, 2823)]."""
    parts: list[tuple[int, int]] = []
    for part in offsets.split(";"):
        bounds = part.split()
        if len(bounds) != 2 or not all(bound.isdigit() for bound in bounds):
            raise CorpusFormatError(
                f"{path} line {line_no}: offsets {offsets!r}, expected 'start end' parts "
                "separated by ';'"
            )
        parts.append((int(bounds[0]), int(bounds[1])))
    return parts


def _check_parts(mention: _Mention, text_length: int) -> None:
    for start, end in mention.parts:
        if not 0 <= start <= end <= text_length:
            raise CorpusFormatError(
                f"{mention.path} line {mention.line_no}: span {start}-{end} lies outside "
                f"{mention.doc_id}'s text of {text_length} characters"
            )


def _spans(
    mentions: Iterable[_Mention], text: str, doc_codes: tuple[str, ...]
) -> tuple[EvidenceSpan, ...]:
    spans: list[EvidenceSpan] = []
    for number, mention in enumerate(mentions):
        if mention.code not in doc_codes:
            # Never seen in the real corpus (X and D/P agree); a span for a code the document
            # is not labelled with would break label-indexed training, so it is left out.
            warnings.warn(
                f"{mention.path} line {mention.line_no}: code {mention.code} is not in "
                f"{mention.doc_id}'s D/P codes; its evidence is ignored",
                stacklevel=2,
            )
            continue
        _check_parts(mention, len(text))
        parts = [(start, end) for start, end in mention.parts if start < end]
        part_of = number if len(parts) > 1 else None
        spans += [EvidenceSpan(mention.code, start, end, part_of) for start, end in parts]
    return tuple(spans)


# --- finding a copy on disk --------------------------------------------------------------------


def default_cache_dir() -> Path:
    """`$XDG_CACHE_HOME/plant-icd/codiesp`, by default `~/.cache/plant-icd/codiesp`."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "plant-icd" / "codiesp"


def is_codiesp_root(folder: Path) -> bool:
    """True if `folder` holds `train/trainD.tsv` or any split's `text_files/` folder."""
    if (folder / "train" / "trainD.tsv").is_file():
        return True
    return any((folder / split / "text_files").is_dir() for split in SPLITS)


def find_codiesp_root(folder: Path, depth: int = 2) -> Path | None:
    """`folder` itself if it is a CodiEsp root, else the first one up to `depth` levels below."""
    if not folder.is_dir():
        return None
    if is_codiesp_root(folder):
        return folder
    if depth == 0:
        return None
    for child in sorted(folder.iterdir()):
        # Zips made on macOS carry a __MACOSX shadow tree of resource forks; never the corpus.
        if child.is_dir() and not child.name.startswith((".", "__MACOSX")):
            found = find_codiesp_root(child, depth - 1)
            if found is not None:
                return found
    return None


def locate_codiesp(
    path: Path | str | None = None, *, cache_dir: Path | None = None, download: bool = True
) -> Path:
    """The CodiEsp root folder to read.

    A given `path` is validated (the layout may sit up to two folders below it) and returned.
    Otherwise it looks at `$PLANT_ICD_CODIESP`, then `../shared/codiesp` from the working
    directory, then the cache folder; failing those it downloads the corpus from Zenodo
    (doi:10.5281/zenodo.3837305) into the cache, unless `download` is False.
    """
    if path is not None:
        found = find_codiesp_root(Path(path))
        if found is None:
            raise CorpusLayoutError(f"{path} is not a CodiEsp folder; expected {_LAYOUT}")
        return found
    cache = cache_dir if cache_dir is not None else default_cache_dir()
    candidates = [Path.cwd().parent / "shared" / "codiesp", cache]
    env_path = os.environ.get(CODIESP_ENV)
    if env_path:
        candidates.insert(0, Path(env_path))
    for candidate in candidates:
        found = find_codiesp_root(candidate)
        if found is not None:
            return found
    if not download:
        raise CorpusLayoutError(
            f"no CodiEsp copy found (looked in {[str(c) for c in candidates]}); set "
            f"{CODIESP_ENV} to its folder or allow the download from {CODIESP_URL}"
        )
    return fetch_codiesp(cache)


def _open_url(url: str) -> Any:
    return urllib.request.urlopen(url, timeout=60)


def fetch_codiesp(
    cache_dir: Path, *, url: str = CODIESP_URL, opener: Callable[[str], Any] = _open_url
) -> Path:
    """Download the CodiEsp zip into `cache_dir`, unpack it there and return the corpus root.

    `opener(url)` returns a readable response (a context manager, like `urlopen`'s); tests
    pass a fake one, since nothing here may reach the network.
    """
    cache_dir.mkdir(parents=True, exist_ok=True)
    zip_path = cache_dir / "final_dataset_v4_to_publish.zip"
    partial = zip_path.with_name(zip_path.name + ".part")
    print(f"Downloading CodiEsp (doi:{CODIESP_DOI}) from {url} into {cache_dir}", file=sys.stderr)
    with opener(url) as response, partial.open("wb") as out:
        headers = getattr(response, "headers", None)
        total = int(headers.get("Content-Length") or 0) if headers is not None else 0
        done = 0
        while chunk := response.read(1 << 20):
            out.write(chunk)
            done += len(chunk)
            size = f" of {total / 1e6:.1f}" if total else ""
            print(f"\r  {done / 1e6:.1f}{size} MB", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    partial.replace(zip_path)  # only a complete download takes the real name
    root = unpack_codiesp(zip_path, cache_dir)
    zip_path.unlink()
    return root


def unpack_codiesp(zip_path: Path, dest: Path) -> Path:
    """Extract the CodiEsp zip into `dest` and return the corpus root found inside it."""
    try:
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(dest)  # extractall drops absolute and '..' member paths
    except zipfile.BadZipFile as error:
        raise CorpusFormatError(
            f"{zip_path} is not a valid zip ({error}); delete it and retry"
        ) from error
    found = find_codiesp_root(dest)
    if found is None:
        raise CorpusLayoutError(
            f"{zip_path} unpacked into {dest} but holds no CodiEsp layout; expected {_LAYOUT}"
        )
    return found
