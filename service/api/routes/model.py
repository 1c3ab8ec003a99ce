"""The served model bundle: identity, code system, thresholds, dev metrics and provenance."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from service.api.convert import error_responses
from service.api.deps import AdminDep, InferenceDep
from service.schemas import ModelCodeOut, ModelOut

router = APIRouter(prefix="/v1/model", tags=["model"])


@router.get("", summary="The served model", responses=error_responses(401, 403, 503))
def read_model(
    caller: AdminDep,
    inference: InferenceDep,
    include_codes: Annotated[bool, Query(description="list every code with its threshold")] = False,
) -> ModelOut:
    """bundle.json as served: what was trained on what, how well it did on dev, checksums."""
    predictor = inference.predictor
    metadata = predictor.metadata
    codes = None
    if include_codes:
        codes = [
            ModelCodeOut(
                code=code,
                description=description,
                threshold=float(threshold),
                train_count=int(count),
            )
            for code, description, threshold, count in zip(
                predictor.codes,
                predictor.descriptions,
                predictor.thresholds.tolist(),
                metadata.train_code_counts,
                strict=True,
            )
        ]
    return ModelOut(
        name=metadata.name,
        version=metadata.version,
        kind=metadata.kind,
        format_version=metadata.format_version,
        created_at=metadata.created_at,
        code_system=metadata.code_system,
        n_codes=len(metadata.codes),
        max_tokens=metadata.max_tokens,
        top_k_export=metadata.top_k_export,
        global_threshold=float(metadata.thresholds["global_threshold"]),
        # Undefined metrics (null in bundle.json, e.g. MAP of an empty bucket) are left out.
        dev_metrics={
            name: value for name, value in metadata.dev_metrics.items() if value is not None
        },
        corpus=dict(metadata.corpus),
        training=dict(metadata.training),
        config=dict(metadata.config),
        package_versions=dict(metadata.package_versions),
        graph_sha256=metadata.graph_sha256,
        tokenizer_sha256=metadata.tokenizer_sha256,
        network_codes=metadata.n_network_codes,
        precision=predictor.precision,
        shortlist_size=predictor.shortlist_size,
        fusion=None if metadata.fusion is None else dict(metadata.fusion),
        codes=codes,
    )
