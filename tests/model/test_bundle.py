"""Bundle format: write/load round trip, checksum and version checks, fingerprints, versions."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from model.bundle import (
    FORMAT_VERSION,
    BundleError,
    BundleMetadata,
    fingerprint_documents,
    load_bundle,
    package_versions,
    read_model_metadata,
    sha256_file,
    write_bundle,
)

CONTRACT_KEYS = [
    "format_version",
    "kind",
    "name",
    "version",
    "created_at",
    "config",
    "codes",
    "code_system",
    "thresholds",
    "train_code_counts",
    "corpus",
    "dev_metrics",
    "training",
    "package_versions",
    "max_tokens",
    "top_k_export",
    "graph_sha256",
    "tokenizer_sha256",
    "network_codes",
    "fusion",
    "shortlist",
    "precision",
]


def _record(n_codes: int = 2) -> BundleMetadata:
    return BundleMetadata(**_metadata(n_codes))


def _metadata(n_codes: int = 2) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "kind": "plant",
        "name": "unit",
        "version": "1.2.3",
        "created_at": "2024-05-01T12:00:00Z",
        "config": {"n_codes": n_codes, "encoder": {"kind": "awd_lstm"}},
        "codes": [{"code": f"A0{i}", "description": f"code {i}"} for i in range(n_codes)],
        "code_system": "icd10cm",
        "thresholds": {"global_threshold": 0.4, "per_code": [0.3] * n_codes, "min_positives": 3},
        "max_tokens": 128,
        "top_k_export": n_codes,
        "train_code_counts": [5] * n_codes,
        "corpus": {"name": "x", "split": "train", "lang": "es", "codes": "d", "fingerprint": "f"},
        "dev_metrics": {"micro_f1": 0.25},
        "training": {"stages": ["lm"], "seconds": {"lm": 1.5}, "seed": 7},
        "package_versions": {"numpy": "2"},
    }


@pytest.fixture
def sources(tmp_path: Path) -> tuple[Path, Path]:
    graph = tmp_path / "src" / "graph.onnx"
    graph.parent.mkdir()
    graph.write_bytes(b"not really onnx, but bytes to hash")
    tokenizer = tmp_path / "src" / "tok.json"
    tokenizer.write_text('{"model": "bpe"}', encoding="utf-8")
    return graph, tokenizer


def test_round_trip_copies_files_and_hashes_them(
    tmp_path: Path, sources: tuple[Path, Path]
) -> None:
    graph, tokenizer = sources
    written = write_bundle(tmp_path / "bundle", _record(), graph, tokenizer)
    loaded = load_bundle(tmp_path / "bundle")
    assert loaded == written
    assert loaded.graph_path.read_bytes() == graph.read_bytes()
    assert loaded.metadata.graph_sha256 == hashlib.sha256(graph.read_bytes()).hexdigest()
    assert loaded.metadata.tokenizer_sha256 == sha256_file(tokenizer)
    on_disk = json.loads((tmp_path / "bundle" / "bundle.json").read_text(encoding="utf-8"))
    assert list(on_disk) == CONTRACT_KEYS
    assert {key: on_disk[key] for key in _metadata()} == _metadata()
    # Atomic writes leave no temporary files behind, and files are readable by others.
    assert sorted(p.name for p in (tmp_path / "bundle").iterdir()) == [
        "bundle.json",
        "model.onnx",
        "tokenizer.json",
    ]
    assert (tmp_path / "bundle" / "bundle.json").stat().st_mode & 0o044 == 0o044


def test_write_accepts_metadata_object_and_recomputes_hashes(
    tmp_path: Path, sources: tuple[Path, Path]
) -> None:
    graph, tokenizer = sources
    stale = BundleMetadata.from_dict({**_metadata(), "graph_sha256": "0", "tokenizer_sha256": "0"})
    bundle = write_bundle(tmp_path / "b", stale, graph, tokenizer)
    assert bundle.metadata.graph_sha256 == sha256_file(graph)
    # Re-writing in place (files already in the directory) keeps them and reloads fine.
    again = write_bundle(tmp_path / "b", bundle.metadata, bundle.graph_path, bundle.tokenizer_path)
    assert again == load_bundle(tmp_path / "b")


def test_corrupt_graph_fails_with_checksum_message(
    tmp_path: Path, sources: tuple[Path, Path]
) -> None:
    bundle = write_bundle(tmp_path / "b", _record(), *sources)
    with bundle.graph_path.open("ab") as handle:
        handle.write(b"\x00")
    with pytest.raises(BundleError, match="checksum") as error:
        load_bundle(tmp_path / "b")
    assert "re-export the bundle" in str(error.value)


def test_missing_files_are_named(tmp_path: Path, sources: tuple[Path, Path]) -> None:
    bundle = write_bundle(tmp_path / "b", _record(), *sources)
    bundle.tokenizer_path.unlink()
    with pytest.raises(BundleError, match=r"tokenizer\.json is missing"):
        load_bundle(tmp_path / "b")
    (tmp_path / "b" / "bundle.json").unlink()
    with pytest.raises(BundleError, match=r"bundle\.json is missing"):
        load_bundle(tmp_path / "b")
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "nowhere")


def _rewrite(bundle_dir: Path, **changes: Any) -> None:
    path = bundle_dir / "bundle.json"
    raw = json.loads(path.read_text(encoding="utf-8"))
    raw.update(changes)
    path.write_text(json.dumps(raw), encoding="utf-8")


def _fusion(**extra: Any) -> dict[str, Any]:
    """A fusion section with no files, plus `extra` keys."""
    keys = ("files", "features", "context_language", "network_candidates", "uses_network")
    return dict(zip(keys, ({}, [], None, 0, False), strict=True)) | {"report": {}} | extra


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"format_version": 4}, "format_version 4; this plant-icd reads format_version"),
        ({"format_version": 0}, r"format_version 0 \(an older layout\)"),
        ({"code_system": "icd11"}, "'icd11', which is not one of"),
        (
            {"thresholds": {"global_threshold": 0.5, "per_code": [0.5, None], "min_positives": 1}},
            "thresholds are unusable",
        ),
        ({"corpus": {"name": "x"}}, r"corpus lacks \['fingerprint', 'split'\]"),
        ({"training": {"seed": 1, "surprise": 2}}, r"unknown keys \['surprise'\]"),
        ({"kind": "tfidf-logreg"}, "kind 'tfidf-logreg'"),
        (
            {"thresholds": {"global_threshold": 0.5, "per_code": [0.5], "min_positives": 1}},
            "per_code has 1 values for 2 codes",
        ),
        ({"train_code_counts": [1, 2, 3]}, "train_code_counts has 3"),
        ({"top_k_export": 3}, "top_k_export=3"),
        ({"max_tokens": "many"}, "max_tokens must be an integer"),
        ({"surprise": 1}, "unknown keys"),
        ({"precision": "fp16"}, r"precision 'fp16' is not one of \['fp32', 'int8'\]"),
        ({"shortlist": {"size": 0, "min_train_notes": 0}}, "size=0 must be positive"),
        ({"shortlist": {"size": 8}}, r"shortlist lacks \['min_train_notes'\]"),
        ({"fusion": _fusion(negated_only_factor=2)}, r"negated_only_factor 2 must lie in \(0, 1\]"),
        ({"fusion": _fusion(negated_only_factor=0)}, r"negated_only_factor 0 must lie in \(0, 1\]"),
        ({"fusion": _fusion(negated_only_factor=True)}, "negated_only_factor True must be a"),
        ({"fusion": _fusion(surprise=1)}, r"fusion lacks \[\] or has unknown keys \['surprise'\]"),
    ],
)
def test_bad_metadata_is_rejected(
    tmp_path: Path, sources: tuple[Path, Path], changes: dict[str, Any], message: str
) -> None:
    write_bundle(tmp_path / "b", _record(), *sources)
    _rewrite(tmp_path / "b", **changes)
    with pytest.raises(BundleError, match=message):
        load_bundle(tmp_path / "b")


def test_missing_key_and_bad_json_are_rejected(tmp_path: Path, sources: tuple[Path, Path]) -> None:
    incomplete = _metadata()
    del incomplete["corpus"]
    with pytest.raises(BundleError, match=r"lacks keys \['corpus'\]"):
        BundleMetadata.from_dict({**incomplete, "graph_sha256": "0", "tokenizer_sha256": "0"})
    write_bundle(tmp_path / "c", _record(), *sources)
    (tmp_path / "c" / "bundle.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(tmp_path / "c")


def test_missing_source_file_is_reported(tmp_path: Path, sources: tuple[Path, Path]) -> None:
    with pytest.raises(BundleError, match="does not exist"):
        write_bundle(tmp_path / "b", _record(), tmp_path / "none.onnx", sources[1])


def test_fingerprint_ignores_order_but_not_content() -> None:
    ids, texts, codes = ["d1", "d2"], ["fiebre", "tos"], [["R50.9", "R05"], ["R05"]]
    base = fingerprint_documents(ids, texts, codes)
    # Hand-computed: documents sorted by id, each a JSON line [id, text, sorted unique codes].
    lines = '["d1", "fiebre", ["R05", "R50.9"]]\n["d2", "tos", ["R05"]]\n'
    assert base == hashlib.sha256(lines.encode("utf-8")).hexdigest()
    assert fingerprint_documents(ids[::-1], texts[::-1], [codes[1], codes[0][::-1]]) == base
    assert fingerprint_documents(ids, ["fiebre", "tos."], codes) != base
    assert fingerprint_documents(ids, texts, [["R50.9"], ["R05"]]) != base
    assert fingerprint_documents(["d1", "d3"], texts, codes) != base
    with pytest.raises(ValueError, match="differ in length"):
        fingerprint_documents(ids, texts[:1], codes)


def test_package_versions_reads_installed_metadata() -> None:
    versions = package_versions(["numpy", "surely-not-a-package-xyz"])
    assert versions == {"numpy": np.__version__, "surely-not-a-package-xyz": "not installed"}


def test_tiny_bundle_fixture_loads(tiny_bundle: Path) -> None:
    bundle = load_bundle(tiny_bundle)
    assert bundle.metadata.kind == "plant" and bundle.metadata.top_k_export == 3
    assert len(bundle.metadata.codes) == len(bundle.metadata.thresholds["per_code"]) == 6


def test_reading_a_models_metadata_verifies_its_files(
    tmp_path: Path, sources: tuple[Path, Path]
) -> None:
    bundle = write_bundle(tmp_path / "b", _record(), *sources)
    assert read_model_metadata(tmp_path / "b") == bundle.metadata
    with bundle.graph_path.open("ab") as handle:
        handle.write(b"\x00")
    with pytest.raises(BundleError, match="graph checksum mismatch"):
        read_model_metadata(tmp_path / "b")
