"""The exported model bundle: a directory of `model.onnx`, `tokenizer.json` and `bundle.json`.

This module writes a bundle atomically with checksums of its files, and loads it back (or any
saved model's metadata) with those checksums verified; the bundle.json records themselves are
`model.metadata`. No torch here.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from model.metadata import (
    BASELINE_KIND,
    BUNDLE_KIND,
    FORMAT_VERSION,
    BaselineMetadata,
    BundleError,
    BundleMetadata,
    ModelMetadata,
    check_version,
)

__all__ = [
    "BASELINE_KIND",
    "BUNDLE_KIND",
    "FORMAT_VERSION",
    "BaselineMetadata",
    "Bundle",
    "BundleError",
    "BundleMetadata",
    "ModelMetadata",
    "fingerprint_documents",
    "load_bundle",
    "package_versions",
    "read_model_metadata",
    "sha256_file",
    "write_baseline",
    "write_bundle",
]

GRAPH_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
METADATA_FILE = "bundle.json"
BASELINE_PIPELINE_FILE = "baseline.joblib"

_CHUNK = 1 << 20
# mkstemp creates files readable by the owner only; a bundle is read by the service's user too.
_FILE_MODE = 0o644


@dataclass(frozen=True)
class Bundle:
    """A verified bundle directory: where its files are and what bundle.json says."""

    directory: Path
    graph_path: Path
    tokenizer_path: Path
    metadata: BundleMetadata

    def fusion_file(self, name: str) -> Path:
        """A fusion artefact's path (checked on load)."""
        return self.directory / name


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def fingerprint_documents(
    ids: Sequence[str], texts: Sequence[str], codes: Sequence[Iterable[str]]
) -> str:
    """sha256 of a document set, independent of reading order and of code order within a note.

    Documents are sorted by (id, text, codes) and each written as one JSON line, so no
    concatenation of different fields can collide.
    """
    if not len(ids) == len(texts) == len(codes):
        raise ValueError(
            f"ids, texts and codes differ in length ({len(ids)}, {len(texts)}, {len(codes)})"
        )
    rows = sorted(
        (doc_id, text, sorted(set(doc_codes)))
        for doc_id, text, doc_codes in zip(ids, texts, codes, strict=True)
    )
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps(row, ensure_ascii=False).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


def package_versions(names: Iterable[str]) -> dict[str, str]:
    """Installed versions by distribution name, read from package metadata (nothing imported)."""
    versions: dict[str, str] = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def _atomic_write_bytes(target: Path, payload: bytes) -> None:
    # Write beside the target and rename: a reader never sees a half-written file.
    handle, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as tmp:
            tmp.write(payload)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp_name, _FILE_MODE)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def _place(source: Path, target: Path) -> None:
    """Copy `source` to `target` atomically unless it already is that file."""
    if not source.is_file():
        raise BundleError(f"{source} does not exist: export the graph and tokenizer first")
    if target.exists() and source.resolve() == target.resolve():
        return
    handle, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(handle)
    try:
        shutil.copyfile(source, tmp_name)
        os.chmod(tmp_name, _FILE_MODE)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def write_bundle(
    directory: str | Path,
    metadata: BundleMetadata,
    graph_path: str | Path,
    tokenizer_path: str | Path,
    fusion_files: Mapping[str, str | Path] | None = None,
) -> Bundle:
    """Place the graph, tokenizer and fusion files in `directory`, hash them and write
    bundle.json last (the fusion file hashes go to `fusion.files`).

    Any hashes `metadata` holds are replaced by the files'. bundle.json is written after the files
    it describes, so a crash leaves a directory that fails to load rather than one that loads with
    the wrong graph.
    """
    bundle_dir = Path(directory)
    bundle_dir.mkdir(parents=True, exist_ok=True)
    if metadata.format_version != FORMAT_VERSION:
        raise BundleError(f"this plant-icd writes bundle format_version {FORMAT_VERSION} only")
    fusion = metadata.fusion
    if fusion_files:
        if fusion is None:
            raise BundleError("fusion files given but the metadata has no fusion section")
        hashes = {}
        for name, source in fusion_files.items():
            _place(Path(source), bundle_dir / name)
            hashes[name] = sha256_file(bundle_dir / name)
        fusion = {**fusion, "files": hashes}

    graph_target = bundle_dir / GRAPH_FILE
    tokenizer_target = bundle_dir / TOKENIZER_FILE
    _place(Path(graph_path), graph_target)
    _place(Path(tokenizer_path), tokenizer_target)
    complete = replace(
        metadata,
        fusion=fusion,
        graph_sha256=sha256_file(graph_target),
        tokenizer_sha256=sha256_file(tokenizer_target),
    )
    _write_metadata(bundle_dir, complete)
    return Bundle(bundle_dir, graph_target, tokenizer_target, complete)


def write_baseline(
    directory: str | Path, metadata: BaselineMetadata, pipeline_path: str | Path
) -> BaselineMetadata:
    """Place the baseline's pickled pipeline in `directory` and write bundle.json with its
    checksum (checked before anything unpickles it)."""
    target_dir = Path(directory)
    target_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir / BASELINE_PIPELINE_FILE
    _place(Path(pipeline_path), target)
    complete = replace(metadata, pipeline_sha256=sha256_file(target))
    _write_metadata(target_dir, complete)
    return complete


def _write_metadata(directory: Path, metadata: ModelMetadata) -> None:
    payload = json.dumps(metadata.to_dict(), indent=2, ensure_ascii=False) + "\n"
    _atomic_write_bytes(directory / METADATA_FILE, payload.encode("utf-8"))


def _read_metadata_json(directory: str | Path) -> tuple[Path, dict[str, Any]]:
    """The directory and its bundle.json as a JSON object; BundleError saying what to do."""
    bundle_dir = Path(directory)
    if not bundle_dir.is_dir():
        raise BundleError(
            f"bundle directory {bundle_dir} does not exist: point to a directory written by "
            "`plant-icd train` (model.onnx, tokenizer.json, bundle.json)"
        )
    metadata_path = bundle_dir / METADATA_FILE
    if not metadata_path.is_file():
        raise BundleError(
            f"{metadata_path} is missing: {bundle_dir} is not a complete bundle; re-export it"
        )
    try:
        raw = json.loads(metadata_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise BundleError(
            f"{metadata_path} is not valid JSON ({error}): re-export the bundle"
        ) from error
    if not isinstance(raw, dict):
        raise BundleError(f"{metadata_path} must hold a JSON object: re-export the bundle")
    return bundle_dir, raw


def _verify(path: Path, expected: str, what: str) -> None:
    if not path.is_file():
        raise BundleError(f"{path} is missing: the bundle is incomplete; re-export the bundle")
    actual = sha256_file(path)
    if actual != expected:
        raise BundleError(
            f"{what} checksum mismatch for {path}: bundle.json says sha256 {expected}, the "
            f"file has {actual}. The file was changed or truncated after export: re-export "
            "the bundle (or restore the original file)"
        )


def read_model_metadata(directory: str | Path) -> ModelMetadata:
    """Any saved model's bundle.json (a PLANT bundle or the baseline), its files' checksums
    verified as `load_bundle` verifies them."""
    bundle_dir, raw = _read_metadata_json(directory)
    record_type = check_version(raw, str(bundle_dir / METADATA_FILE))
    if record_type is BundleMetadata:
        return load_bundle(bundle_dir).metadata
    metadata = BaselineMetadata.from_dict(raw)
    _verify(bundle_dir / BASELINE_PIPELINE_FILE, metadata.pipeline_sha256, "baseline pipeline")
    return metadata


def load_bundle(directory: str | Path) -> Bundle:
    """Read and verify a bundle: known format, all files present, checksums matching."""
    bundle_dir, raw = _read_metadata_json(directory)
    metadata_path = bundle_dir / METADATA_FILE
    kind = raw.get("kind")
    if kind != BUNDLE_KIND:
        raise BundleError(
            f"{metadata_path} has kind {kind!r}, not {BUNDLE_KIND!r}: this directory holds another "
            "kind of model (e.g. the TF-IDF baseline), which the ONNX runtime cannot serve"
        )
    check_version(raw, str(metadata_path))
    metadata: BundleMetadata = BundleMetadata.from_dict(raw)
    graph_path, tokenizer_path = bundle_dir / GRAPH_FILE, bundle_dir / TOKENIZER_FILE
    _verify(graph_path, metadata.graph_sha256, "graph")
    _verify(tokenizer_path, metadata.tokenizer_sha256, "tokenizer")
    for name, digest in (metadata.fusion or {"files": {}})["files"].items():
        _verify(bundle_dir / name, digest, "fusion")
    return Bundle(bundle_dir, graph_path, tokenizer_path, metadata)
