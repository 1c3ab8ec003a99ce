"""Coder feedback: appending decisions to a prediction's audit trail, and exporting reviewed notes.

Events are append-only; the latest decision per code is the current state. A review is complete
when every suggestion above threshold is accepted or rejected: a final submission must leave none
undecided (or say what to do with the rest), so no suggestion silently drops out of the training
data. The export writes complete reviews only, as JSONL lines `{"id", "text", "codes"}` (final
codes: accepted suggestions, then added codes) that `training.corpora.jsonl` reads.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from datetime import datetime
from functools import partial
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from fastapi.responses import StreamingResponse
from sqlalchemy.orm import Session

from model.codes import compact
from service import crud
from service.api.convert import as_utc, error_responses, event_out, review_out
from service.api.deps import (
    AdminDep,
    CoderDep,
    DatabaseDep,
    InferenceDep,
    MetricsDep,
    SessionDep,
    SessionFactoryDep,
)
from service.core.logging import get_logger
from service.core.metrics import Metrics
from service.core.security import Principal
from service.db.models import Prediction
from service.db.session import UNAVAILABLE_ERRORS, DatabaseTimeoutError
from service.inference import CodeRejectedError, InferenceService
from service.schemas import DecisionIn, FeedbackIn, FeedbackOut

router = APIRouter(tags=["feedback"])
log = get_logger("feedback")

SKIPPED_HEADER = "X-Export-Skipped-Without-Text"
INCOMPLETE_HEADER = "X-Export-Skipped-Incomplete"
UNDECIDED_AS = {"accept": "accepted", "reject": "rejected"}


def _resolve(
    prediction: Prediction, decisions: list[DecisionIn], inference: InferenceService
) -> list[tuple[str, str]]:
    """(code as recorded, decision) per decision, or 422 listing every problem."""
    suggested = {compact(row.code): row.code for row in prediction.codes}
    added_before = {
        compact(event.code): event.code
        for event in prediction.feedback
        if event.decision == "added"
    }
    resolved: list[tuple[str, str]] = []
    problems: list[dict[str, str]] = []
    seen: set[str] = set()
    for decision in decisions:
        key = compact(decision.code)
        if key in seen:
            problems.append(
                {
                    "code": decision.code,
                    "msg": f"{decision.code!r} appears twice in this feedback: send one decision "
                    "per code",
                }
            )
            continue
        seen.add(key)
        if decision.decision == "added":
            try:
                code = suggested.get(key) or inference.validate_code(decision.code)
            except CodeRejectedError as error:
                problems.append({"code": decision.code, "msg": str(error)})
                continue
        else:
            found = suggested.get(key) or added_before.get(key)
            if found is None:
                problems.append(
                    {
                        "code": decision.code,
                        "msg": f"{decision.code!r} was not suggested for this prediction, so it "
                        "cannot be accepted or rejected: send decision 'added' to add it",
                    }
                )
                continue
            code = found
        resolved.append((code, decision.decision))
    if problems:
        # Each message names its code already.
        summary = "; ".join(problem["msg"] for problem in problems)
        raise HTTPException(422, detail={"detail": summary, "errors": problems})
    return resolved


def _decide_the_rest(
    prediction: Prediction, decisions: list[tuple[str, str]], feedback: FeedbackIn
) -> list[tuple[str, str]]:
    """Decisions for the suggestions above threshold that neither earlier events nor this
    request decide, per `undecided`; 422 naming them when the submission is final without it."""
    decided = {event.code for event in prediction.feedback} | {code for code, _ in decisions}
    undecided = crud.undecided_codes(prediction, decided)
    if not undecided:
        return []
    if feedback.undecided is not None:
        return [(code, UNDECIDED_AS[feedback.undecided]) for code in undecided]
    if not feedback.final:
        return []
    raise HTTPException(
        422,
        detail={
            "detail": f"the review is final but {len(undecided)} suggestion(s) above threshold "
            f'are undecided: {", ".join(undecided)}. Accept or reject each, send "undecided": '
            '"accept" or "reject" to decide the rest, or "final": false to save progress',
            "errors": [
                {"code": code, "msg": f"{code!r} is above its threshold and undecided"}
                for code in undecided
            ],
        },
    )


@router.post(
    "/v1/predictions/{prediction_id}/feedback",
    status_code=status.HTTP_201_CREATED,
    summary="Record a coder's decisions",
    responses=error_responses(400, 401, 403, 404, 422, 503),
)
async def create_feedback(
    prediction_id: uuid.UUID,
    feedback: FeedbackIn,
    caller: CoderDep,
    database: DatabaseDep,
    inference: InferenceDep,
    metrics: MetricsDep,
) -> FeedbackOut:
    """Accept or reject suggested codes and add codes the model missed (checked against the
    catalogue). Appends to the audit trail; the latest decision per code is the current state.

    A final submission (the default) must leave no suggestion above threshold undecided: decide
    each, or send `"undecided": "accept"` or `"reject"` for the rest; `"final": false` saves
    progress and leaves the note in the queue."""
    try:
        return await database.run(
            partial(
                _record_feedback,
                prediction_id=prediction_id,
                feedback=feedback,
                caller=caller,
                inference=inference,
                metrics=metrics,
            )
        )
    except DatabaseTimeoutError:
        metrics.db_write_errors.labels(operation="feedback").inc()
        raise


def _record_feedback(
    session: Session,
    *,
    prediction_id: uuid.UUID,
    feedback: FeedbackIn,
    caller: Principal,
    inference: InferenceService,
    metrics: Metrics,
) -> FeedbackOut:
    """The feedback call's database work, on a worker thread in its own session."""
    prediction = crud.get_prediction(session, prediction_id=str(prediction_id))
    if prediction is None:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, detail=f"no prediction with id {prediction_id}"
        )
    decisions = _resolve(prediction, feedback.decisions, inference)
    decisions += _decide_the_rest(prediction, decisions, feedback)
    try:
        recorded = crud.record_feedback(
            session,
            prediction=prediction,
            decisions=decisions,
            # The key is the audit identity; the display name defaults to it.
            coder_id=feedback.coder_id or caller.name,
            comment=feedback.comment,
            client=caller.name,
        )
    except UNAVAILABLE_ERRORS:
        metrics.db_write_errors.labels(operation="feedback").inc()
        raise
    for _, decision in decisions:
        metrics.feedback.labels(decision=decision).inc()
    session.refresh(prediction, attribute_names=["feedback"])
    return FeedbackOut(
        prediction_id=prediction_id,
        recorded=[event_out(event) for event in recorded],
        review=review_out(prediction, list(prediction.feedback)),
    )


@router.get(
    "/v1/feedback/export",
    summary="Reviewed notes as JSONL",
    response_class=StreamingResponse,
    responses={
        200: {
            "content": {
                "application/x-ndjson": {
                    "example": '{"id": "3f2b8a34-...", "text": "Patient ...", "codes": ["R50.9"]}'
                }
            },
            "description": "one completely reviewed note per line. Notes whose review has "
            f"undecided suggestions are skipped and counted in the {INCOMPLETE_HEADER} header; "
            f"notes whose text is not stored, in the {SKIPPED_HEADER} header",
        },
        **error_responses(401, 403, 422, 503),
    },
)
def export_feedback(
    caller: AdminDep,
    session: SessionDep,
    sessions: SessionFactoryDep,
    created_from: Annotated[datetime | None, Query(description="predictions from (ISO)")] = None,
    created_to: Annotated[datetime | None, Query(description="predictions before")] = None,
) -> StreamingResponse:
    """Every completely reviewed prediction whose note text is stored, with its final codes, as
    `{"id", "text", "codes", "note_id", "encounter_id"}` lines (`id` is the prediction id).

    A review is complete when every suggestion above threshold is accepted or rejected; the
    others would teach the model that their undecided codes are absent, so they are skipped and
    counted in `X-Export-Skipped-Incomplete`."""
    since, until = as_utc(created_from), as_utc(created_to)
    skipped = crud.count_reviewed_without_text(session, created_from=since, created_to=until)
    incomplete = crud.count_incomplete_reviews(session, created_from=since, created_to=until)
    if skipped:
        log.warning(
            "feedback export skips reviewed notes without stored text",
            extra={"skipped": skipped},
        )
    if incomplete:
        log.warning(
            "feedback export skips reviews with undecided suggestions",
            extra={"skipped": incomplete},
        )

    def lines() -> Iterator[bytes]:
        for row, events in crud.iter_reviewed(sessions, created_from=since, created_to=until):
            record = {
                "id": row.id,
                "text": row.note_text,
                "codes": crud.final_codes(row, events),
                "note_id": row.note_id,
                "encounter_id": row.encounter_id,
            }
            yield (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")

    return StreamingResponse(
        lines(),
        media_type="application/x-ndjson",
        headers={
            SKIPPED_HEADER: str(skipped),
            INCOMPLETE_HEADER: str(incomplete),
            "Content-Disposition": 'attachment; filename="feedback-export.jsonl"',
        },
    )
