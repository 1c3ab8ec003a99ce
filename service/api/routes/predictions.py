"""Predictions: coding one note or a batch, reading a recorded prediction, the review queue.

The audit log never misses a prediction: the codes are returned only after the prediction and its
codes are committed. If the database is unavailable the client gets 503 with Retry-After and no
codes (and `plant_icd_db_write_errors_total` grows); nothing is spooled, so there is never a
prediction in a client's hands that the audit log lacks.

Retrying is safe with an `Idempotency-Key`: a retry of the same request by the same key holder
returns the original predictions (header `Idempotent-Replayed: true`) rather than new ones, for
`idempotency_window_hours` (24 h by default, as Stripe keeps its keys). Without a key each call is
a new prediction. A prediction whose response could not be handed to a still-connected client
keeps `delivered_at` NULL, so the audit log tells answered predictions from abandoned ones.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Annotated, Literal

from fastapi import (
    APIRouter,
    BackgroundTasks,
    Header,
    HTTPException,
    Query,
    Request,
    Response,
    status,
)
from sqlalchemy.exc import IntegrityError

from service import crud
from service.api.convert import (
    as_utc,
    error_responses,
    fresh_prediction,
    prediction_summary,
    replayed_prediction,
    stored_prediction,
)
from service.api.deps import (
    CoderDep,
    DatabaseDep,
    EhrDep,
    InferenceDep,
    MetricsDep,
    SettingsDep,
)
from service.core.config import Settings
from service.core.logging import get_logger
from service.core.metrics import Metrics
from service.core.security import Principal
from service.db.models import Prediction, utc_now
from service.db.session import UNAVAILABLE_ERRORS
from service.db.work import Database
from service.inference import InferenceOverloadedError, InferenceService
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
# nginx's code for "the client closed the request": logged and counted, never received.
CLIENT_CLOSED_REQUEST = 499
log = get_logger("predictions")


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


IDEMPOTENCY_HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias=IDEMPOTENCY_HEADER,
        pattern=r"^[\x21-\x7e]{1,200}$",
        description="a key of your choice (e.g. a UUID), 1-200 printable ASCII characters, "
        "unique per request: a retry with the same key and body returns the original "
        "predictions (header Idempotent-Replayed: true) instead of making new ones; the same "
        "key with another body is 422. Keys are kept for `idempotency_window_hours` (24 h).",
    ),
]


@dataclass(frozen=True)
class PredictionOutcome:
    """The predictions to answer with, and whether they replay an earlier request's."""

    predictions: list[PredictionOut]
    replayed: bool


def _request_sha256(route: str, notes: list[NoteIn]) -> str:
    """The request's fingerprint: what a replay must match (route and every note field)."""
    canonical = json.dumps(
        {"route": route, "notes": [note.model_dump(mode="json") for note in notes]},
        sort_keys=True,
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def _replay(
    rows: list[Prediction], notes: list[NoteIn], idempotency: crud.IdempotentRequest
) -> PredictionOutcome:
    """The original response for a retried request, or 422 when the key came with another body."""
    if rows[0].request_sha256 != idempotency.request_sha256 or len(rows) != len(notes):
        raise HTTPException(
            422,
            detail=f"the {IDEMPOTENCY_HEADER} {idempotency.key!r} was already used with a "
            "different request: send a new key for a new request (reuse a key only to retry "
            "the identical request)",
        )
    # Highlight text is cut from the text as sent, which the fingerprint proves unchanged, so a
    # replay is whole even when note text is not stored.
    return PredictionOutcome(
        [replayed_prediction(row, note.text) for row, note in zip(rows, notes, strict=True)],
        replayed=True,
    )


async def predict_and_record(
    notes: list[NoteIn],
    *,
    route: str,
    idempotency_key: str | None,
    caller: Principal,
    inference: InferenceService,
    settings: Settings,
    metrics: Metrics,
    database: Database,
    client_gone: Callable[[], Awaitable[bool]],
) -> PredictionOutcome:
    """Code `notes` and commit them to the audit log, or replay the predictions an earlier
    request with the same Idempotency-Key made. Every route that codes notes goes through here
    (the JSON routes and FHIR's $code); `route` keeps their keys' fingerprints apart."""
    _check_sizes(notes, settings)
    idempotency = (
        None
        if idempotency_key is None
        else crud.IdempotentRequest(idempotency_key, _request_sha256(route, notes))
    )
    if idempotency is not None:
        not_before = utc_now() - timedelta(hours=settings.idempotency_window_hours)
        earlier = await database.run(
            partial(
                crud.find_idempotent,
                client=caller.name,
                key=idempotency.key,
                not_before=not_before,
            ),
        )
        if earlier:
            return _replay(earlier, notes, idempotency)
    top_ks = [note.top_k or settings.default_top_k for note in notes]
    try:
        result = await inference.predict([note.text for note in notes], max(top_ks))
    except ValueError as error:  # the runtime names the note and what to send instead
        raise HTTPException(422, detail=str(error)) from None
    except InferenceOverloadedError as error:
        raise HTTPException(
            503,
            detail=f"{error}: nothing was recorded; retry in {settings.retry_after_seconds} s",
            headers={"Retry-After": str(settings.retry_after_seconds)},
        ) from None
    ranked = [codes[:k] for codes, k in zip(result.predictions, top_ks, strict=True)]
    records = [note.audit_record(top_k=k) for note, k in zip(notes, top_ks, strict=True)]
    record = partial(
        crud.record_predictions,
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
        abstentions=result.abstentions,
        idempotency=idempotency,
    )
    if await client_gone():
        # Nobody would receive it: record nothing rather than a prediction no one was given.
        log.warning("the client left during inference; nothing was recorded")
        raise HTTPException(CLIENT_CLOSED_REQUEST, detail="the client closed the request")
    try:
        rows = await database.run(record)
    except IntegrityError:
        if idempotency is None:
            raise
        # The same key committed first in a concurrent request: answer as its replay.
        winner = await database.run(
            partial(
                crud.find_idempotent,
                client=caller.name,
                key=idempotency.key,
                not_before=datetime.min.replace(tzinfo=UTC),
            ),
        )
        return _replay(winner, notes, idempotency)
    except UNAVAILABLE_ERRORS:
        metrics.db_write_errors.labels(operation="prediction").inc()
        raise
    metrics.predictions.inc(len(rows))
    return PredictionOutcome(
        [
            fresh_prediction(row, codes, result.elapsed_ms, abstention)
            for row, codes, abstention in zip(rows, ranked, result.abstentions, strict=True)
        ],
        replayed=False,
    )


async def _confirm_delivery(database: Database, prediction_ids: list[str]) -> None:
    """After the response went out: mark its predictions delivered (best effort: a failure
    leaves them unconfirmed, which is what the mark is for)."""
    try:
        await database.run(partial(crud.mark_delivered, prediction_ids=prediction_ids))
    except Exception as error:
        log.warning(
            "could not mark predictions delivered; they stay unconfirmed",
            extra={"error": type(error).__name__, "predictions": len(prediction_ids)},
        )


async def deliver(
    outcome: PredictionOutcome,
    request: Request,
    response: Response,
    background: BackgroundTasks,
    database: Database,
) -> None:
    """Headers of a (possibly replayed) answer, and the delivery mark once it has gone out."""
    if outcome.replayed:
        response.headers[REPLAYED_HEADER] = "true"
    # A client that has gone gets nothing: its predictions stay unconfirmed (delivered_at NULL).
    if await request.is_disconnected():
        log.warning("the client left before its predictions were returned")
        return
    ids = [str(prediction.prediction_id) for prediction in outcome.predictions]
    background.add_task(_confirm_delivery, database, ids)


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    summary="Code one note",
    response_description="the recorded prediction; Location points at it",
    responses=error_responses(400, 401, 403, 413, 422, 503),
)
async def create_prediction(
    note: NoteIn,
    request: Request,
    response: Response,
    background: BackgroundTasks,
    caller: EhrDep,
    inference: InferenceDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    database: DatabaseDep,
    idempotency_key: IdempotencyKey = None,
) -> PredictionOut:
    """Ranked codes with scores, threshold decisions and evidence highlights for one note.

    Highlights are `[start, end)` offsets into `text` as sent. Answered only once recorded.
    """
    outcome = await predict_and_record(
        [note],
        route="single",
        idempotency_key=idempotency_key,
        caller=caller,
        inference=inference,
        settings=settings,
        metrics=metrics,
        database=database,
        client_gone=request.is_disconnected,
    )
    (prediction,) = outcome.predictions
    response.headers["Location"] = f"/v1/predictions/{prediction.prediction_id}"
    await deliver(outcome, request, response, background, database)
    return prediction


@router.post(
    "/batch",
    status_code=status.HTTP_201_CREATED,
    summary="Code several notes",
    responses=error_responses(400, 401, 403, 413, 422, 503),
)
async def create_predictions(
    batch: BatchIn,
    request: Request,
    response: Response,
    background: BackgroundTasks,
    caller: EhrDep,
    inference: InferenceDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    database: DatabaseDep,
    idempotency_key: IdempotencyKey = None,
) -> BatchOut:
    """One prediction per note, in the order sent; all are recorded in one transaction."""
    outcome = await predict_and_record(
        batch.notes,
        route="batch",
        idempotency_key=idempotency_key,
        caller=caller,
        inference=inference,
        settings=settings,
        metrics=metrics,
        database=database,
        client_gone=request.is_disconnected,
    )
    await deliver(outcome, request, response, background, database)
    return BatchOut(predictions=outcome.predictions)


@router.get(
    "",
    summary="The review queue",
    responses=error_responses(401, 403, 422, 503),
)
async def list_predictions(
    caller: CoderDep,
    database: DatabaseDep,
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
    page, total = await database.run(
        partial(
            crud.list_predictions,
            filters=filters,
            limit=limit,
            offset=offset,
            newest_first=order == "newest",
        )
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
async def read_prediction(
    prediction_id: uuid.UUID, caller: CoderDep, database: DatabaseDep
) -> PredictionDetail:
    """The prediction with its note text (if stored), codes, feedback history and review state."""
    row = await database.run(partial(crud.get_prediction, prediction_id=str(prediction_id)))
    if row is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND,
            detail=f"no prediction with id {prediction_id}: check the id (GET /v1/predictions "
            "lists them)",
        )
    return stored_prediction(row)
