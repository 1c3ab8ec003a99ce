"""Synthetic PLANT bundles for latency benchmarks: the demo network (or a tiny one) with random
weights over a label space of any size, exported by the real path (`model.nn.export.export_onnx`)
and written by the real bundle writer. Latency depends on the shapes, not on the weight values.

Codes are CodiEsp's training D codes first, then ICD-10-CM leaf codes from the catalogue
(74,736 in all), so a bundle of 1,767, 8,929 (MIMIC-III full's size) or 74,736 codes holds real
codes the service can describe. Built bundles are kept under a cache folder by their shape.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from model.bundle import FORMAT_VERSION, BundleMetadata, package_versions, write_bundle
from model.metadata import DEFAULT_SHORTLIST_SIZE
from model.tokenizer import NoteTokenizer

NETWORKS = ("demo", "tiny")
# The TorchScript exporter writes one protobuf, which cannot exceed 2 GiB; the static branch's
# mutual-information table alone is vocab x codes float32. Past this many bytes the vocabulary
# is made smaller (the time per token does not depend on the vocabulary size: it is a gather).
MAX_MI_BYTES = 1_500_000_000
TINY_FIELDS = dict(
    emb_dim=8, hidden_dim=8, n_layers=1, chunk_len=16, window=16, inattention_k=4, l2r_dim=4
)


def label_space(n_codes: int, first: Sequence[str] = ()) -> list[str]:
    """`n_codes` distinct codes: those in `first`, then ICD-10-CM leaf codes in catalogue order."""
    codes = list(dict.fromkeys(first))[:n_codes]
    if len(codes) < n_codes:
        import simple_icd_10_cm as icd

        known = set(codes)
        for code in icd.get_all_codes(with_dots=True):
            if len(codes) >= n_codes:
                break
            if code not in known and icd.is_leaf(code):
                codes.append(code)
                known.add(code)
    if len(codes) < n_codes:
        raise SystemExit(f"error: only {len(codes)} codes available, {n_codes} asked")
    return codes


def vocabulary_size(n_codes: int, wanted: int) -> int:
    """`wanted`, or less so that the vocab x codes float32 table stays under MAX_MI_BYTES."""
    return int(min(wanted, MAX_MI_BYTES // (4 * n_codes)))


def bundle_metadata(
    config: dict[str, object], codes: Sequence[str], max_tokens: int, top_k: int, name: str
) -> BundleMetadata:
    n_codes = len(codes)
    return BundleMetadata(
        format_version=FORMAT_VERSION,
        kind="plant",
        name=name,
        version="0.0.0-synthetic",
        created_at="2026-01-01T00:00:00Z",
        config=config,
        codes=[{"code": code, "description": f"code {code}"} for code in codes],
        code_system="icd10cm",
        thresholds={"global_threshold": 0.5, "per_code": [0.5] * n_codes, "min_positives": 2},
        max_tokens=max_tokens,
        top_k_export=top_k,
        train_code_counts=[1] * n_codes,
        corpus={
            "name": "synthetic",
            "split": "train",
            "lang": "en",
            "codes": "D",
            "fingerprint": "0" * 64,
        },
        dev_metrics={},
        training={"stages": ["random"], "seconds": {}, "seed": 0},
        package_versions=package_versions(["numpy", "onnxruntime", "tokenizers", "torch"]),
        # A network with a first stage exports two-stage decoding, at the default S (override
        # it at load: OnnxPredictor(shortlist_size=...)).
        shortlist=(
            {"size": DEFAULT_SHORTLIST_SIZE, "min_train_notes": 0}
            if config.get("first_stage")
            else None
        ),
    )


def build_bundle(
    directory: Path,
    texts: Sequence[str],
    codes: Sequence[str],
    *,
    network: str = "demo",
    vocab_size: int = 8000,
    max_tokens: int = 6144,
    top_k: int = 50,
    seed: int = 0,
) -> Path:
    """Write a bundle of `codes` to `directory`/bundle: a BPE tokenizer trained on `texts`, the
    network with random weights (random mutual information too), exported to ONNX."""
    import torch

    from model.nn.export import export_onnx
    from model.nn.network import PlantClassifier, build_config

    if network not in NETWORKS:
        raise SystemExit(f"error: network must be one of {NETWORKS}, got {network!r}")
    directory.mkdir(parents=True, exist_ok=True)
    tokenizer = NoteTokenizer.train(texts, vocab_size=vocabulary_size(len(codes), vocab_size))
    tokenizer_path = tokenizer.save(directory / "build_tokenizer.json")
    torch.manual_seed(seed)
    fields = TINY_FIELDS if network == "tiny" else {}
    k = min(top_k, len(codes))
    config = build_config(
        vocab_size=tokenizer.vocab_size, n_codes=len(codes), top_k_export=k, **fields
    )
    model = PlantClassifier(config).eval()
    generator = np.random.default_rng(seed)
    mutual_information = generator.random((tokenizer.vocab_size, len(codes)), dtype=np.float32)
    model.set_mutual_information(mutual_information * 0.05)
    del mutual_information
    graph = export_onnx(model, directory / "build_model.onnx", top_k=k)
    del model
    name = f"synthetic-{network}-{len(codes)}"
    metadata = bundle_metadata(json.loads(json.dumps(config.to_dict())), codes, max_tokens, k, name)
    bundle = directory / "bundle"
    write_bundle(bundle, metadata, graph, tokenizer_path)
    graph.unlink()
    return bundle


def cached_bundle(
    cache: Path,
    texts: Sequence[str],
    codes: Sequence[str],
    *,
    network: str = "demo",
    vocab_size: int = 8000,
    max_tokens: int = 6144,
) -> Path:
    """The bundle for this shape from `cache`, built there the first time."""
    vocab = vocabulary_size(len(codes), vocab_size)
    # The format version in the name: a bundle of another format has another graph contract.
    folder = cache / f"{network}-c{len(codes)}-v{vocab}-t{max_tokens}-f{FORMAT_VERSION}"
    bundle = folder / "bundle"
    if (bundle / "bundle.json").is_file():
        return bundle
    return build_bundle(
        folder, texts, codes, network=network, vocab_size=vocab_size, max_tokens=max_tokens
    )


def note_of_length(texts: Sequence[str], tokenizer: NoteTokenizer, n_tokens: int) -> str:
    """Real notes joined (repeated if need be) and cut after their `n_tokens`-th token."""
    joined = "\n\n".join(texts)
    while len(tokenizer.encode(joined).ids) < n_tokens:
        joined = joined + "\n\n" + joined
    offsets = tokenizer.encode(joined).offsets
    return joined[: int(offsets[n_tokens - 1][1])]
