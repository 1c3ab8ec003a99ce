"""Predictions: coding one note or a batch, reading a recorded prediction, the review queue.

The audit log never misses a prediction: the codes are returned only after the prediction and its
codes are committed. If the database is unavailable the client gets 503 with Retry-After and no
codes (and `plant_icd_db_write_errors_total` grows); nothing is spooled, so there is never a
prediction in a client's hands that the audit log lacks. Retrying is safe: each call is a new
prediction.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Query, Response, status
from fastapi.concurrency import run_in_threadpool
from sqlalchemy.orm import Session

from service import crud
from service.api.convert import (
    as_utc,
    error_responses,
    fresh_prediction,
    prediction_summary,
    stored_prediction,
)
from service.api.deps import (
    CoderDep,
    EhrDep,
    InferenceDep,
    MetricsDep,
    SessionDep,
    SettingsDep,
)
from service.core.config import Settings
from service.core.metrics import Metrics
from service.core.security import Principal
from service.db.session import UNAVAILABLE_ERRORS
from service.inference import InferenceService
from service.schemas import (
    BatchIn,
    BatchOut,
    CleanStr,
    NoteIn,
    PredictionDetail,
    PredictionOut,
    PredictionPage,
)

router = APIRouter(prefix="/v1/predictions", tags=["predictions"])


def _check_sizes(notes: list[NoteIn], settings: Settings) -> None:
    if len(notes) > settings.max_batch_notes:
        raise HTTPException(
            413,
            detail=f"the batch has {len(notes)} notes; the limit is {settings.max_batch_notes}: "
            "split it into smaller batches",
        )
    for index, note in enumerate(notes):
        if len(note.text) > settings.max_note_chars:
            where = "the note" if len(notes) == 1 else f"note {index}"
            raise HTTPException(
                413,
                detail=f"{where} has {len(note.text)} characters; the limit is "
                f"{settings.max_note_chars}: send a shorter excerpt or split the note",
            )


async def _predict_and_record(
    notes: list[NoteIn],
    *,
    caller: Principal,
    inference: InferenceService,
    settings: Settings,
    metrics: Metrics,
    session: Session,
) -> list[PredictionOut]:
    _check_sizes(notes, settings)
    top_ks = [note.top_k or settings.default_top_k for note in notes]
    try:
        result = await inference.predict([note.text for note in notes], max(top_ks))
    except ValueError as error:  # the runtime names the note and what to send instead
        raise HTTPException(422, detail=str(error)) from None
    ranked = [codes[:k] for codes, k in zip(result.predictions, top_ks, strict=True)]
    records = [
        crud.NoteRecord(
            text=note.text, note_id=note.note_id, encounter_id=note.encounter_id, top_k=k
        )
        for note, k in zip(notes, top_ks, strict=True)
    ]
    try:
        rows = await run_in_threadpool(
            crud.record_predictions,
            session,
            notes=records,
            predictions=ranked,
            model_name=inference.predictor.name,
            model_version=inference.predictor.version,
            elapsed_ms=result.elapsed_ms,
            client=caller.name,
            store_note_text=settings.store_note_text,
            thresholds={
                code.code: inference.threshold(code.code) for codes in ranked for code in codes
            },
        )
    except UNAVAILABLE_ERRORS:
        metrics.db_write_errors.labels(operation="prediction").inc()
        raise
    metrics.predictions.inc(len(rows))
    return [
        fresh_prediction(row, codes, result.elapsed_ms, abstention)
        for row, codes, abstention in zip(rows, ranked, result.abstentions, strict=True)
    ]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Code one note",
    response_description="the recorded prediction; Location points at it",
    responses=error_responses(400, 401, 403, 413, 422, 503),
)
async def create_prediction(
    note: NoteIn,
    response: Response,
    caller: EhrDep,
    inference: InferenceDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    session: SessionDep,
) -> PredictionOut:
    """Ranked codes with scores, threshold decisions and evidence highlights for one note.

    Highlights are `[start, end)` offsets into `text` as sent. Answered only once recorded.
    """
    (prediction,) = await _predict_and_record(
        [note],
        caller=caller,
        inference=inference,
        settings=settings,
        metrics=metrics,
        session=session,
    )
    response.headers["Location"] = f"/v1/predictions/{prediction.prediction_id}"
    return prediction


@router.post(
    "/batch",
    status_code=status.HTTP_201_CREATED,
    summary="Code several notes",
    responses=error_responses(400, 401, 403, 413, 422, 503),
)
async def create_predictions(
    batch: BatchIn,
    caller: EhrDep,
    inference: InferenceDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    session: SessionDep,
) -> BatchOut:
    """One prediction per note, in the order sent; all are recorded in one transaction."""
    predictions = await _predict_and_record(
        batch.notes,
        caller=caller,
        inference=inference,
        settings=settings,
        metrics=metrics,
        session=session,
    )
    return BatchOut(predictions=predictions)


@router.get(
    "",
    summary="The review queue",
    responses=error_responses(401, 403, 422, 503),
)
def list_predictions(
    caller: CoderDep,
    session: SessionDep,
    reviewed: Annotated[
        bool | None, Query(description="true: with feedback; false: still to review")
    ] = None,
    created_from: Annotated[
        datetime | None, Query(description="created at or after (ISO 8601; UTC if no zone)")
    ] = None,
    created_to: Annotated[datetime | None, Query(description="created before")] = None,
    note_id: Annotated[CleanStr | None, Query(max_length=200)] = None,
    encounter_id: Annotated[CleanStr | None, Query(max_length=200)] = None,
    order: Annotated[Literal["newest", "oldest"], Query()] = "newest",
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
) -> PredictionPage:
    """Predictions, newest first by default, filtered by review state, date range and ids."""
    filters = crud.PredictionFilters(
        reviewed=reviewed,
        created_from=as_utc(created_from),
        created_to=as_utc(created_to),
        note_id=note_id,
        encounter_id=encounter_id,
    )
    page, total = crud.list_predictions(
        session, filters=filters, limit=limit, offset=offset, newest_first=order == "newest"
    )
    return PredictionPage(
        items=[prediction_summary(row, events) for row, events in page],
        total=total,
        limit=limit,
        offset=offset,
    )


@router.get(
    "/{prediction_id}",
    summary="One recorded prediction",
    responses=error_responses(401, 403, 404, 422, 503),
)
def read_prediction(
    prediction_id: uuid.UUID, caller: CoderDep, session: SessionDep
) -> PredictionDetail:
    """The prediction with its note text (if stored), codes, feedback history and review state."""
    row = crud.get_prediction(session, prediction_id=str(prediction_id))
    if row is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail=f"no prediction with id {prediction_id}: check the id (GET /v1/predictions "
            "lists them)",
        )
    return stored_prediction(row)
