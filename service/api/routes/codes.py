"""Catalogue look-up and type-ahead search in the served bundle's code system(s).

Any authenticated caller may use these; each result says whether the model can suggest the code.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Query, status

from model.catalogue import UNAVAILABLE, CodeInfo
from service.api.convert import error_responses
from service.api.deps import CallerDep, InferenceDep
from service.inference import CodeRejectedError, InferenceService
from service.schemas import CleanStr, CodeInfoOut, CodeSearchOut, HierarchyNodeOut

router = APIRouter(prefix="/v1/codes", tags=["codes"])


def _code_out(info: CodeInfo, inference: InferenceService) -> CodeInfoOut:
    description, source = info.description, info.description_source
    model_description = inference.model_description(info.code)
    if not description and model_description:
        # Systems without a registry (ICD-10-PCS, ICD-9) still have the bundle's own text.
        description, source = model_description, "model bundle"
    return CodeInfoOut(
        code=info.code,
        system=info.system.value,
        description=description,
        description_source=source if description else UNAVAILABLE,
        valid=info.valid,
        kind=info.kind,
        is_billable=info.is_billable,
        chapter=None if info.chapter is None else HierarchyNodeOut(**vars(info.chapter)),
        block=None if info.block is None else HierarchyNodeOut(**vars(info.block)),
        category=None if info.category is None else HierarchyNodeOut(**vars(info.category)),
        in_model=inference.model_code(info.code) is not None,
        train_count=inference.train_count(info.code),
    )


@router.get(
    "/{code}",
    summary="Look up a code",
    responses=error_responses(401, 403, 404, 422, 503),
)
def read_code(
    code: Annotated[str, Path(min_length=1, max_length=50)],
    caller: CallerDep,
    inference: InferenceDep,
) -> CodeInfoOut:
    """Description, hierarchy and validity of a code written in any usual form (`n44.8`)."""
    info = inference.lookup(code)
    if info is None:
        try:
            inference.validate_code(code)
            hint = "unknown code"
        except CodeRejectedError as error:
            hint = str(error)
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail=f"{hint} (code system {inference.code_system}); search with GET /v1/codes?q=",
        )
    return _code_out(info, inference)


@router.get(
    "",
    summary="Search codes",
    responses=error_responses(401, 403, 422, 503),
)
def search_codes(
    q: Annotated[CleanStr, Query(min_length=1, max_length=100, description="code or words")],
    caller: CallerDep,
    inference: InferenceDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
) -> CodeSearchOut:
    """Type-ahead: the exact code, codes starting with the query, then descriptions with words
    starting with each query word (case and accents ignored)."""
    results = inference.search(q, limit)
    return CodeSearchOut(query=q, results=[_code_out(info, inference) for info in results])
