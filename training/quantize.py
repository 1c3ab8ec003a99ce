"""Dynamic int8 quantisation of a bundle's graph: ONNX Runtime's `quantize_dynamic` on the
MatMul / Gemm layers with constant weights and the LSTMs, written as a new bundle marked
`precision: int8`, with the dev MAP of both precisions where a corpus is at hand (int8 is only
for bundles whose dev MAP stays within `MAX_MAP_DROP` of fp32).
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

from model.bundle import FORMAT_VERSION, BundleError, load_bundle, write_bundle
from model.metadata import BundleMetadata, TrainingInfo
from training.corpora.base import Document

# What `quantize_dynamic` turns to int8: layers whose weights are constants (the encoder's
# LSTMs, the LAAT projection, the first stage). The decoder's gathered code rows are graph
# values, not constants, so they stay float32.
INT8_OPS = ("MatMul", "Gemm", "LSTM")
# The bar: int8 only where dev MAP stays within this of fp32.
MAX_MAP_DROP = 0.005


@dataclass(frozen=True)
class QuantizeResult:
    bundle_dir: Path
    fp32_bytes: int
    int8_bytes: int
    dev_map_fp32: float | None  # None: not evaluated
    dev_map_int8: float | None

    @property
    def map_drop(self) -> float | None:
        if self.dev_map_fp32 is None or self.dev_map_int8 is None:
            return None
        return self.dev_map_fp32 - self.dev_map_int8


class MapDropError(ValueError):
    """int8 loses more dev MAP than allowed; the int8 bundle was not kept."""


def quantize_graph(source: Path, target: Path) -> Path:
    """Write the dynamic-int8 version of the ONNX graph `source` to `target`."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        str(source),
        str(target),
        op_types_to_quantize=list(INT8_OPS),
        weight_type=QuantType.QInt8,
    )
    return target


def dev_report(bundle_dir: Path, documents: Sequence[Document]) -> dict[str, float]:
    """Every dev metric of a bundle as served (`training.evaluate`)."""
    from model.runtime import OnnxPredictor
    from training.evaluate import evaluate_predictor

    return evaluate_predictor(OnnxPredictor(bundle_dir), documents).report.as_dict()


def _int8_metadata(
    metadata: BundleMetadata, source: Path, measured: dict[str, Any]
) -> BundleMetadata:
    """The source's record, marked int8 and saying where it came from. Its dev metrics are
    those measured on int8 (`measured`: set later), never the fp32 bundle's."""
    record = {
        "from": str(source),
        "from_version": metadata.version,
        "from_graph_sha256": metadata.graph_sha256,
        "ops": list(INT8_OPS),
        **measured,
    }
    training = cast(TrainingInfo, {**metadata.training, "quantization": record})
    return replace(
        metadata,
        format_version=FORMAT_VERSION,
        precision="int8",
        training=training,
        dev_metrics={},
    )


def quantize_bundle(
    source: str | Path,
    out: str | Path,
    documents: Sequence[Document] | None = None,
    *,
    max_map_drop: float = MAX_MAP_DROP,
) -> QuantizeResult:
    """Write `out`, the int8 version of the fp32 bundle `source` (tokenizer, thresholds and
    fusion files unchanged; file hashes of the new graph). With dev `documents`, both bundles
    are evaluated: the int8 bundle records its own dev metrics and both MAPs, and a drop above
    `max_map_drop` removes it again and raises MapDropError."""
    source_dir, out_dir = Path(source), Path(out)
    bundle = load_bundle(source_dir)
    if bundle.metadata.precision != "fp32":
        raise BundleError(f"{source_dir} is already {bundle.metadata.precision}")
    if out_dir.exists() and any(out_dir.iterdir()):
        raise BundleError(f"{out_dir} exists and is not empty: choose a new directory")
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        with tempfile.TemporaryDirectory(dir=out_dir.parent) as work:
            graph = quantize_graph(bundle.graph_path, Path(work) / "model.onnx")
            fusion = bundle.metadata.fusion
            files = {name: bundle.fusion_file(name) for name in (fusion or {"files": {}})["files"]}
            metadata = _int8_metadata(bundle.metadata, source_dir, {})
            write_bundle(out_dir, metadata, graph, bundle.tokenizer_path, files)
        sizes = bundle.graph_path.stat().st_size, (out_dir / "model.onnx").stat().st_size
        result = QuantizeResult(out_dir, *sizes, None, None)
        if documents:
            result = _evaluate(result, source_dir, documents, max_map_drop)
    except BaseException:
        shutil.rmtree(out_dir, ignore_errors=True)
        raise
    return result


def _evaluate(
    result: QuantizeResult, source: Path, documents: Sequence[Document], max_map_drop: float
) -> QuantizeResult:
    """Dev MAP of both precisions; the int8 bundle's dev metrics and quantization record
    rewritten with them; MapDropError above `max_map_drop`."""
    from training.evaluate import json_safe

    fp32_map = float(dev_report(source, documents)["map"])
    report = dev_report(result.bundle_dir, documents)
    int8_map = float(report["map"])
    measured = {"dev_map_fp32": fp32_map, "dev_map_int8": int8_map, "dev_notes": len(documents)}
    bundle = load_bundle(result.bundle_dir)
    record = {**bundle.metadata.training.get("quantization", {}), **measured}
    metadata = replace(
        bundle.metadata,
        dev_metrics=json_safe(report),
        training=cast(TrainingInfo, {**bundle.metadata.training, "quantization": record}),
    )
    write_bundle(result.bundle_dir, metadata, bundle.graph_path, bundle.tokenizer_path)
    result = replace(result, dev_map_fp32=fp32_map, dev_map_int8=int8_map)
    if fp32_map - int8_map > max_map_drop:
        raise MapDropError(
            f"int8 dev MAP {int8_map:.4f} is {fp32_map - int8_map:.4f} below fp32 {fp32_map:.4f} "
            f"(allowed {max_map_drop}): serve the fp32 bundle; no int8 bundle was written"
        )
    return result
