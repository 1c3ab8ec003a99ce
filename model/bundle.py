"""The exported model bundle: a directory of `model.onnx`, `tokenizer.json` and `bundle.json`.

This module owns the bundle.json schema (`BundleMetadata`), writing it atomically with checksums of
the graph and tokenizer, and loading it back with those checksums verified. No torch here.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, TypedDict

FORMAT_VERSION = 2
# Version 1 bundles (no fusion, every code a network output) still load unchanged.
READABLE_VERSIONS = (1, 2)
BUNDLE_KIND = "plant"
GRAPH_FILE = "model.onnx"
TOKENIZER_FILE = "tokenizer.json"
METADATA_FILE = "bundle.json"

_HASH_KEYS = ("graph_sha256", "tokenizer_sha256")
_CHUNK = 1 << 20
# mkstemp creates files readable by the owner only; a bundle is read by the service's user too.
_FILE_MODE = 0o644


class BundleError(Exception):
    """A bundle directory that cannot be served; the message says what is wrong and what to do."""


class CodeEntry(TypedDict):
    code: str
    description: str


class ThresholdsInfo(TypedDict):
    global_threshold: float
    per_code: list[float]  # one per code, in logit order
    min_positives: int  # codes with fewer dev positives fall back to the global threshold


class FusionInfo(TypedDict):
    """The fused model's parts beside the graph (model/fusion.py reads them)."""

    files: dict[str, str]  # file name in the bundle -> sha256: lexicon, neighbours, combiner
    features: list[str]  # the combiner's input columns, in order (model.fusion.FEATURES)
    context_language: str | None  # context rules (negation...) applied to lexicon matches
    network_candidates: int  # the network's top codes added to each note's candidates
    uses_network: bool  # whether the combiner reads the network logit
    report: dict[str, Any]  # out-of-fold fitting figures


class CorpusInfo(TypedDict):
    name: str
    split: str
    lang: str
    codes: str  # which code set (e.g. "diagnostico", "all")
    fingerprint: str  # fingerprint_documents() of the training documents


class TrainingInfo(TypedDict):
    stages: list[str]
    seconds: dict[str, float]  # per stage
    seed: int


@dataclass(frozen=True, kw_only=True)
class BundleMetadata:
    """Everything bundle.json holds, one field per key, in the contract's order."""

    format_version: int = FORMAT_VERSION
    kind: str = BUNDLE_KIND
    name: str
    version: str
    created_at: str  # ISO 8601, UTC
    config: dict[str, Any]  # PlantConfig.to_dict()
    codes: list[CodeEntry]  # in logit order
    code_system: str
    thresholds: ThresholdsInfo
    max_tokens: int  # the runtime reads at most this many tokens of a note
    top_k_export: int  # K of the graph's top_codes / top_attention outputs
    train_code_counts: list[int]  # per code, in logit order
    corpus: CorpusInfo
    dev_metrics: dict[str, float] = field(default_factory=dict)
    training: TrainingInfo
    package_versions: dict[str, str] = field(default_factory=dict)
    graph_sha256: str = ""
    tokenizer_sha256: str = ""
    # The graph scores codes[:network_codes]; the rest only the fusion can propose (codes the
    # lexicon or catalogue names that training never saw). None: every code is a graph output.
    network_codes: int | None = None
    fusion: FusionInfo | None = None

    @property
    def n_network_codes(self) -> int:
        return len(self.codes) if self.network_codes is None else self.network_codes

    @property
    def code_list(self) -> list[str]:
        return [entry["code"] for entry in self.codes]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], *, require_hashes: bool = True) -> BundleMetadata:
        """Validate the keys and their basic shape; raise BundleError naming what is wrong."""
        known = {f.name for f in fields(cls)}
        optional = {
            "format_version",
            "kind",
            "dev_metrics",
            "package_versions",
            "network_codes",
            "fusion",
        }
        if not require_hashes:
            optional |= set(_HASH_KEYS)
        missing = sorted(known - optional - set(raw))
        if missing:
            raise BundleError(f"bundle metadata lacks keys {missing}: re-export the bundle")
        unknown = sorted(set(raw) - known)
        if unknown:
            raise BundleError(
                f"bundle metadata has unknown keys {unknown}: it was written by a newer "
                "plant-icd; upgrade plant-icd or re-export the bundle"
            )
        metadata = cls(**{key: raw[key] for key in known if key in raw})
        metadata.validate()
        return metadata

    def validate(self) -> None:
        """Check that the per-code lists agree with the code list."""
        if not isinstance(self.codes, list) or not isinstance(self.thresholds, Mapping):
            raise BundleError("bundle metadata codes must be a list and thresholds an object")
        n_codes = len(self.codes)
        if n_codes == 0:
            raise BundleError("bundle metadata lists no codes: re-export the bundle")
        for entry in self.codes:
            if not isinstance(entry, Mapping) or not {"code", "description"} <= set(entry):
                raise BundleError(
                    f"bundle metadata code entry {entry!r} needs 'code' and 'description'"
                )
        per_code = self.thresholds.get("per_code")
        if per_code is None or len(per_code) != n_codes:
            found = "no" if per_code is None else len(per_code)
            raise BundleError(
                f"bundle metadata thresholds.per_code has {found} values for {n_codes} codes: "
                "re-export the bundle"
            )
        if "global_threshold" not in self.thresholds:
            raise BundleError("bundle metadata thresholds lack global_threshold: re-export")
        if len(self.train_code_counts) != n_codes:
            raise BundleError(
                f"bundle metadata train_code_counts has {len(self.train_code_counts)} values for "
                f"{n_codes} codes: re-export the bundle"
            )
        for key in ("max_tokens", "top_k_export", "format_version"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool):
                raise BundleError(f"bundle metadata {key} must be an integer, not {value!r}")
        if self.max_tokens < 1:
            raise BundleError(f"bundle metadata max_tokens must be positive, not {self.max_tokens}")
        n_network = self.n_network_codes
        if not isinstance(n_network, int) or not 1 <= n_network <= n_codes:
            raise BundleError(
                f"bundle metadata network_codes={self.network_codes!r} must lie in 1..{n_codes}"
            )
        if not 1 <= self.top_k_export <= n_network:
            raise BundleError(
                f"bundle metadata top_k_export={self.top_k_export} must lie in 1..{n_network}"
            )
        if n_network < n_codes and self.fusion is None:
            raise BundleError(
                f"bundle metadata lists {n_codes} codes but the graph scores {n_network} and "
                "there is no fusion section to score the rest: re-export the bundle"
            )
        if self.fusion is not None:
            missing = sorted(set(FusionInfo.__annotations__) - set(self.fusion))
            if missing:
                raise BundleError(f"bundle metadata fusion lacks {missing}: re-export the bundle")


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
    metadata: BundleMetadata | Mapping[str, Any],
    graph_path: str | Path,
    tokenizer_path: str | Path,
    fusion_files: Mapping[str, str | Path] | None = None,
) -> Bundle:
    """Place the graph, tokenizer and fusion files in `directory`, hash them and write
    bundle.json last (the fusion file hashes go to `fusion.files`).

    `metadata` is everything but the hashes (any hashes given are recomputed). bundle.json is
    written after the files it describes, so a crash leaves a directory that fails to load rather
    than one that loads with the wrong graph.
    """
    bundle_dir = Path(directory)
    bundle_dir.mkdir(parents=True, exist_ok=True)
    raw = metadata.to_dict() if isinstance(metadata, BundleMetadata) else dict(metadata)
    for key in _HASH_KEYS:
        raw.pop(key, None)
    if raw.get("format_version", FORMAT_VERSION) != FORMAT_VERSION:
        raise BundleError(f"this plant-icd writes bundle format_version {FORMAT_VERSION} only")
    if fusion_files:
        if raw.get("fusion") is None:
            raise BundleError("fusion files given but the metadata has no fusion section")
        hashes = {}
        for name, source in fusion_files.items():
            _place(Path(source), bundle_dir / name)
            hashes[name] = sha256_file(bundle_dir / name)
        raw["fusion"] = {**raw["fusion"], "files": hashes}
    partial = BundleMetadata.from_dict(raw, require_hashes=False)

    graph_target = bundle_dir / GRAPH_FILE
    tokenizer_target = bundle_dir / TOKENIZER_FILE
    _place(Path(graph_path), graph_target)
    _place(Path(tokenizer_path), tokenizer_target)

    complete = BundleMetadata(
        **{
            **{f.name: getattr(partial, f.name) for f in fields(partial)},
            "graph_sha256": sha256_file(graph_target),
            "tokenizer_sha256": sha256_file(tokenizer_target),
        }
    )
    payload = json.dumps(complete.to_dict(), indent=2, ensure_ascii=False) + "\n"
    _atomic_write_bytes(bundle_dir / METADATA_FILE, payload.encode("utf-8"))
    return Bundle(bundle_dir, graph_target, tokenizer_target, complete)


def load_bundle(directory: str | Path) -> Bundle:
    """Read and verify a bundle: known format, all files present, checksums matching."""
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

    version = raw.get("format_version")
    if version not in READABLE_VERSIONS:
        raise BundleError(
            f"{metadata_path} has format_version {version!r}; this plant-icd reads versions "
            f"{list(READABLE_VERSIONS)}: re-export the bundle with this version, or upgrade "
            "plant-icd"
        )
    kind = raw.get("kind")
    if kind != BUNDLE_KIND:
        raise BundleError(
            f"{metadata_path} has kind {kind!r}, not {BUNDLE_KIND!r}: this directory holds another "
            "kind of model (e.g. the TF-IDF baseline), which the ONNX runtime cannot serve"
        )
    metadata = BundleMetadata.from_dict(raw)

    checks = (
        (bundle_dir / GRAPH_FILE, metadata.graph_sha256, "graph"),
        (bundle_dir / TOKENIZER_FILE, metadata.tokenizer_sha256, "tokenizer"),
        *(
            (bundle_dir / name, digest, "fusion")
            for name, digest in (metadata.fusion or {"files": {}})["files"].items()
        ),
    )
    for path, expected, what in checks:
        if not path.is_file():
            raise BundleError(f"{path} is missing: the bundle is incomplete; re-export the bundle")
        actual = sha256_file(path)
        if actual != expected:
            raise BundleError(
                f"{what} checksum mismatch for {path}: bundle.json says sha256 {expected}, the "
                f"file has {actual}. The file was changed or truncated after export: re-export "
                "the bundle (or restore the original file)"
            )
    return Bundle(bundle_dir, checks[0][0], checks[1][0], metadata)
