"""From database rows and model outputs to response bodies.

Highlight text is never stored: it is cut from the note text when shown, and is null once the
text is gone (storage off, or purged).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from model.prediction import CodePrediction
from service import crud
from service.db.models import FeedbackEvent, PredictedCode, Prediction, to_utc
from service.schemas import (
    CodeOut,
    CurrentDecision,
    ErrorOut,
    FeedbackEventOut,
    HighlightOut,
    ModelRef,
    PredictionDetail,
    PredictionOut,
    PredictionSummary,
    ReviewOut,
)

# Shown in OpenAPI for every route that can answer it.
ERROR_DESCRIPTIONS = {
    400: "the body could not be read (e.g. not UTF-8)",
    401: "no API key, or an unknown one",
    403: "the key's role may not do this",
    404: "no such prediction or code",
    413: "a note or a batch over the configured limit",
    422: "the request is invalid; the message says what to fix",
    503: "the model is warming up or the database is unavailable; retry after Retry-After",
}


def as_utc(moment: datetime | None) -> datetime | None:
    """Query times without a zone are read as UTC; ones beyond the calendar's edges in UTC are
    clamped to them (a bound past every date still means "after everything")."""
    return None if moment is None else to_utc(moment)


def error_responses(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorOut, "description": ERROR_DESCRIPTIONS[code]} for code in codes}


def fresh_prediction(
    row: crud.RecordedPrediction,
    ranked: Sequence[CodePrediction],
    elapsed_ms: float,
    abstention: str | None = None,
) -> PredictionOut:
    return PredictionOut(
        prediction_id=uuid.UUID(row.id),
        created_at=row.created_at,
        note_id=row.note_id,
        encounter_id=row.encounter_id,
        model=ModelRef(name=row.model_name, version=row.model_version),
        codes=[
            CodeOut(
                code=code.code,
                description=code.description,
                score=code.score,
                rank=code.rank,
                above_threshold=code.above_threshold,
                threshold=threshold,
                highlights=[HighlightOut(**vars(h)) for h in code.highlights],
            )
            # The recorded thresholds are these codes', in rank order.
            for code, threshold in zip(ranked, row.thresholds, strict=True)
        ],
        abstention=abstention,
        elapsed_ms=elapsed_ms,
    )


def _stored_code(row: PredictedCode, note_text: str | None) -> CodeOut:
    return CodeOut(
        code=row.code,
        description=row.description,
        score=row.score,
        rank=row.rank,
        above_threshold=row.above_threshold,
        threshold=row.threshold,
        # A stored span is a Highlight without its text (crud.py); rows recorded before evidence
        # had a source or flags take the schema's defaults (attention, unflagged).
        highlights=[
            HighlightOut(
                **span,
                text=None if note_text is None else note_text[span["start"] : span["end"]],
            )
            for span in row.highlights
        ],
    )


def replayed_prediction(row: Prediction, text: str) -> PredictionOut:
    """A recorded prediction as it was first returned; highlight text is cut from `text`, the
    note as sent again (identical, or the replay would have been refused)."""
    return PredictionOut(
        prediction_id=uuid.UUID(row.id),
        created_at=row.created_at,
        note_id=row.note_id,
        encounter_id=row.encounter_id,
        model=ModelRef(name=row.model_name, version=row.model_version),
        codes=[_stored_code(code, text) for code in row.codes],
        abstention=row.abstention,
        elapsed_ms=row.elapsed_ms,
    )


def event_out(event: FeedbackEvent) -> FeedbackEventOut:
    return FeedbackEventOut.model_validate(
        {
            "id": event.id,
            "created_at": event.created_at,
            "coder": event.client,
            "coder_id": event.coder_id,
            "code": event.code,
            "decision": event.decision,
            "comment": event.comment,
        }
    )


def review_out(row: Prediction, events: Sequence[FeedbackEvent]) -> ReviewOut:
    latest = crud.current_decisions(events)
    undecided = crud.undecided_codes(row, set(latest))
    status = crud.review_status(len(events), undecided)
    return ReviewOut(
        reviewed=status == "complete",
        status=status,
        undecided=undecided,
        decisions=[
            CurrentDecision.model_validate(
                {
                    "code": code,
                    "decision": event.decision,
                    "coder": event.client,
                    "coder_id": event.coder_id,
                    "decided_at": event.created_at,
                }
            )
            for code, event in latest.items()
        ],
        final_codes=crud.final_codes(row, events),
    )


def stored_prediction(row: Prediction) -> PredictionDetail:
    events = list(row.feedback)
    return PredictionDetail(
        prediction_id=uuid.UUID(row.id),
        created_at=row.created_at,
        note_id=row.note_id,
        encounter_id=row.encounter_id,
        model=ModelRef(name=row.model_name, version=row.model_version),
        codes=[_stored_code(code, row.note_text) for code in row.codes],
        abstention=row.abstention,
        elapsed_ms=row.elapsed_ms,
        note_text=row.note_text,
        note_sha256=row.note_sha256,
        note_chars=row.note_chars,
        client=row.client,
        feedback=[event_out(event) for event in events],
        review=review_out(row, events),
    )


def prediction_summary(row: Prediction, tally: crud.FeedbackTally) -> PredictionSummary:
    undecided = [code for code in tally.above_threshold if code not in tally.decided_codes]
    status = crud.review_status(tally.events, undecided)
    return PredictionSummary(
        prediction_id=uuid.UUID(row.id),
        created_at=row.created_at,
        note_id=row.note_id,
        encounter_id=row.encounter_id,
        model=ModelRef(name=row.model_name, version=row.model_version),
        note_chars=row.note_chars,
        codes_above_threshold=list(tally.above_threshold),
        feedback_events=tally.events,
        reviewed=status == "complete",
        review_status=status,
        undecided=undecided,
    )
