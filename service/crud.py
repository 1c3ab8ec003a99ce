"""Data access: every read and write of the audit tables, as keyword-only functions on a Session.

Writes commit before returning, so a caller holding the result knows it is recorded. The review
state (latest decision per code, final codes) is derived here from the append-only events.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Select, Table, and_, exists, func, insert, or_, select, update
from sqlalchemy.orm import Session, defer, raiseload, selectinload, sessionmaker

from model.prediction import CodePrediction, Highlight
from service.db.models import FeedbackEvent, PredictedCode, Prediction, new_id, utc_now
from service.db.session import lazy_commit


@dataclass(frozen=True)
class NoteRecord:
    """What the client sent for one note."""

    text: str
    note_id: str | None
    encounter_id: str | None
    top_k: int
    # The patient, as the FHIR reference the EHR sent; the JSON API has no subject field.
    subject_reference: str | None = None


def note_sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class IdempotentRequest:
    """The client's Idempotency-Key and the sha256 of the request it came with."""

    key: str
    request_sha256: str


def stored_highlight(span: Highlight) -> dict[str, Any]:
    """A highlight as stored: its fields but the text (cut from the note when shown).

    Highlight is flat, so its fields are read directly: `dataclasses.asdict` deep-copies every
    value and cost more than the INSERTs (a third of recording a 10-code prediction)."""
    return {key: value for key, value in vars(span).items() if key != "text"}


def _table(model: type[Prediction] | type[PredictedCode]) -> Table:
    return model.metadata.tables[model.__tablename__]


@dataclass(frozen=True)
class RecordedPrediction:
    """A prediction as just committed: what its answer needs (the rows are not read back)."""

    id: str
    created_at: datetime
    note_id: str | None
    encounter_id: str | None
    model_name: str
    model_version: str
    thresholds: tuple[float | None, ...]  # per ranked code, in rank order


def record_predictions(
    session: Session,
    *,
    notes: Sequence[NoteRecord],
    predictions: Sequence[Sequence[CodePrediction]],
    model_name: str,
    model_version: str,
    elapsed_ms: float,
    client: str,
    store_note_text: bool,
    thresholds: Mapping[str, float | None] | None = None,
    abstentions: Sequence[str | None] | None = None,
    idempotency: IdempotentRequest | None = None,
) -> list[RecordedPrediction]:
    """Insert one prediction per note with its ranked codes, in one transaction, and commit.

    `thresholds` maps a code to its decision threshold, recorded with each ranked code. With
    `idempotency`, a second request with the same key by the same client fails the commit
    (IntegrityError), so a retry can never add a second set of rows. Two multi-row INSERTs
    (Core, not the ORM's unit of work: it cost more than the statements on a 10-code answer)."""
    thresholds = thresholds or {}
    abstentions = abstentions if abstentions is not None else [None] * len(notes)
    created_at = utc_now()
    recorded: list[RecordedPrediction] = []
    prediction_rows: list[dict[str, Any]] = []
    code_rows: list[dict[str, Any]] = []
    for position, (note, ranked, abstention) in enumerate(
        zip(notes, predictions, abstentions, strict=True)
    ):
        prediction_id = new_id()
        prediction_rows.append(
            {
                "id": prediction_id,
                "created_at": created_at,
                "note_id": note.note_id,
                "encounter_id": note.encounter_id,
                "subject_reference": note.subject_reference,
                "note_text": note.text if store_note_text else None,
                "note_sha256": note_sha256(note.text),
                "note_chars": len(note.text),
                "model_name": model_name,
                "model_version": model_version,
                "top_k": note.top_k,
                "elapsed_ms": elapsed_ms,
                "client": client,
                "abstention": abstention,
                "idempotency_key": None if idempotency is None else idempotency.key,
                "request_sha256": None if idempotency is None else idempotency.request_sha256,
                "request_position": None if idempotency is None else position,
                "delivered_at": None,
            }
        )
        code_rows += [
            {
                "prediction_id": prediction_id,
                "rank": code.rank,
                "code": code.code,
                "description": code.description,
                "score": code.score,
                "above_threshold": code.above_threshold,
                "threshold": thresholds.get(code.code),
                # Offsets, weight, source and flags; never the text (cut from the note when shown).
                "highlights": [stored_highlight(span) for span in code.highlights],
            }
            for code in ranked
        ]
        recorded.append(
            RecordedPrediction(
                id=prediction_id,
                created_at=created_at,
                note_id=note.note_id,
                encounter_id=note.encounter_id,
                model_name=model_name,
                model_version=model_version,
                thresholds=tuple(thresholds.get(code.code) for code in ranked),
            )
        )
    try:
        session.execute(insert(_table(Prediction)), prediction_rows)
        if code_rows:
            session.execute(insert(_table(PredictedCode)), code_rows)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return recorded


def find_idempotent(
    session: Session, *, client: str, key: str, not_before: datetime
) -> list[Prediction]:
    """The predictions `client` made with Idempotency-Key `key`, in request order, codes loaded.

    Keys older than `not_before` have expired: they are released (set to NULL, committed) and
    the result is empty, so the key starts a new request, as in Stripe's 24-hour window.
    """
    statement = (
        select(Prediction)
        .where(Prediction.client == client, Prediction.idempotency_key == key)
        .options(selectinload(Prediction.codes))
        .order_by(Prediction.request_position)
    )
    rows = list(session.scalars(statement))
    if rows and rows[0].created_at < not_before:
        session.execute(
            update(Prediction)
            .where(Prediction.client == client, Prediction.idempotency_key == key)
            .values(idempotency_key=None)
        )
        session.commit()
        return []
    return rows


def mark_delivered(session: Session, *, prediction_ids: Sequence[str]) -> None:
    """Record that these predictions' response went to a client that was still connected.

    Best effort (a lost mark reads as unconfirmed), so the commit does not wait for the disk."""
    with lazy_commit(session):
        session.execute(
            update(Prediction)
            .where(Prediction.id.in_(list(prediction_ids)), Prediction.delivered_at.is_(None))
            .values(delivered_at=utc_now())
        )


def get_prediction(session: Session, *, prediction_id: str) -> Prediction | None:
    """The prediction with its codes and feedback loaded, or None."""
    statement = (
        select(Prediction)
        .where(Prediction.id == prediction_id)
        .options(selectinload(Prediction.codes), selectinload(Prediction.feedback))
    )
    return session.scalars(statement).one_or_none()


def find_by_references(
    session: Session,
    *,
    prediction_id: str | None = None,
    encounter_ids: Sequence[str] = (),
    subject_references: Sequence[str] = (),
    client: str | None = None,
    limit: int,
) -> tuple[list[Prediction], int]:
    """Predictions matching every given criterion (an id, one of `encounter_ids`, one of
    `subject_references`, made for `client`), newest first, with codes and feedback loaded: at
    most `limit` of them, and how many match in all."""
    statement = select(Prediction)
    if client is not None:
        statement = statement.where(Prediction.client == client)
    if prediction_id is not None:
        statement = statement.where(Prediction.id == prediction_id)
    if encounter_ids:
        statement = statement.where(Prediction.encounter_id.in_(list(encounter_ids)))
    if subject_references:
        statement = statement.where(Prediction.subject_reference.in_(list(subject_references)))
    total = session.scalar(statement.with_only_columns(func.count(Prediction.id)))
    rows = session.scalars(
        statement.options(selectinload(Prediction.codes), selectinload(Prediction.feedback))
        .order_by(Prediction.created_at.desc(), Prediction.id.desc())
        .limit(limit)
    )
    return list(rows), int(total or 0)


@dataclass(frozen=True)
class PredictionFilters:
    # True: complete reviews only; False: not complete (unreviewed or undecided suggestions left).
    reviewed: bool | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    note_id: str | None = None
    encounter_id: str | None = None


def _has_feedback() -> Any:
    return exists().where(FeedbackEvent.prediction_id == Prediction.id)


def _has_undecided() -> Any:
    """A suggestion above threshold on this prediction with no feedback event on its code."""
    decided = exists().where(
        FeedbackEvent.prediction_id == PredictedCode.prediction_id,
        FeedbackEvent.code == PredictedCode.code,
    )
    return exists().where(
        PredictedCode.prediction_id == Prediction.id,
        PredictedCode.above_threshold.is_(True),
        ~decided,
    )


def _review_complete() -> Any:
    return and_(_has_feedback(), ~_has_undecided())


def _filtered(statement: Select[Any], filters: PredictionFilters) -> Select[Any]:
    if filters.reviewed is True:
        statement = statement.where(_review_complete())
    elif filters.reviewed is False:
        statement = statement.where(~_review_complete())
    if filters.created_from is not None:
        statement = statement.where(Prediction.created_at >= filters.created_from)
    if filters.created_to is not None:
        statement = statement.where(Prediction.created_at < filters.created_to)
    if filters.note_id is not None:
        statement = statement.where(Prediction.note_id == filters.note_id)
    if filters.encounter_id is not None:
        statement = statement.where(Prediction.encounter_id == filters.encounter_id)
    return statement


@dataclass(frozen=True)
class FeedbackTally:
    """What the queue shows of a prediction's feedback: how many events, which codes decided,
    and its suggestions above threshold (in rank order), read without its other code rows."""

    events: int
    decided_codes: frozenset[str]
    above_threshold: tuple[str, ...] = ()


def list_predictions(
    session: Session,
    *,
    filters: PredictionFilters,
    limit: int,
    offset: int,
    newest_first: bool = True,
) -> tuple[list[tuple[Prediction, FeedbackTally]], int]:
    """One page of predictions with a tally of their feedback, and the total matching."""
    total = session.scalar(
        _filtered(select(Prediction), filters).with_only_columns(func.count(Prediction.id))
    )
    order = (
        (Prediction.created_at.desc(), Prediction.id.desc())
        if newest_first
        else (Prediction.created_at.asc(), Prediction.id.asc())
    )
    # A summary needs neither the note text nor the ranked codes (up to 1,000 per prediction):
    # both stay in the database, and touching them here raises instead of loading them.
    statement = (
        _filtered(select(Prediction), filters)
        .options(defer(Prediction.note_text, raiseload=True), raiseload(Prediction.codes))
        .order_by(*order)
        .limit(limit)
        .offset(offset)
    )
    page: list[Prediction] = list(session.scalars(statement))
    counts: dict[str, int] = {}
    decided: dict[str, set[str]] = {}
    above: dict[str, list[str]] = {}
    if page:
        suggested = session.execute(
            select(PredictedCode.prediction_id, PredictedCode.code)
            .where(
                PredictedCode.prediction_id.in_([row.id for row in page]),
                PredictedCode.above_threshold.is_(True),
            )
            .order_by(PredictedCode.prediction_id, PredictedCode.rank)
        )
        for prediction_id, code in suggested:
            above.setdefault(prediction_id, []).append(code)
        counted = session.execute(
            select(FeedbackEvent.prediction_id, FeedbackEvent.code, func.count(FeedbackEvent.id))
            .where(FeedbackEvent.prediction_id.in_([row.id for row in page]))
            .group_by(FeedbackEvent.prediction_id, FeedbackEvent.code)
        )
        for prediction_id, code, n in counted:
            counts[prediction_id] = counts.get(prediction_id, 0) + int(n)
            decided.setdefault(prediction_id, set()).add(code)
    tallies = [
        (
            row,
            FeedbackTally(
                counts.get(row.id, 0),
                frozenset(decided.get(row.id, ())),
                tuple(above.get(row.id, ())),
            ),
        )
        for row in page
    ]
    return tallies, int(total or 0)


def record_feedback(
    session: Session,
    *,
    prediction: Prediction,
    decisions: Sequence[tuple[str, str]],
    coder_id: str,
    comment: str | None,
    client: str,
) -> list[FeedbackEvent]:
    """Append one event per (code, decision) and commit; earlier events are never touched."""
    created_at = utc_now()
    events = [
        FeedbackEvent(
            prediction_id=prediction.id,
            created_at=created_at,
            coder_id=coder_id,
            code=code,
            decision=decision,
            comment=comment,
            client=client,
        )
        for code, decision in decisions
    ]
    try:
        session.add_all(events)
        session.commit()
    except BaseException:
        session.rollback()
        raise
    return events


# -- review state -------------------------------------------------------------------------------


def current_decisions(events: Sequence[FeedbackEvent]) -> dict[str, FeedbackEvent]:
    """The latest event per code (events are append-only; a higher id is later)."""
    latest: dict[str, FeedbackEvent] = {}
    for event in sorted(events, key=lambda event: event.id):
        latest[event.code] = event
    return latest


def undecided_codes(prediction: Prediction, decided: set[str] | frozenset[str]) -> list[str]:
    """Suggestions above threshold, in rank order, whose code is not in `decided`."""
    return [
        row.code
        for row in sorted(prediction.codes, key=lambda row: row.rank)
        if row.above_threshold and row.code not in decided
    ]


ReviewStatus = Literal["unreviewed", "in_progress", "complete"]


def review_status(feedback_events: int, undecided: Sequence[str]) -> ReviewStatus:
    """unreviewed (no event), in_progress (suggestions above threshold left), or complete."""
    if not feedback_events:
        return "unreviewed"
    return "in_progress" if undecided else "complete"


def final_codes(prediction: Prediction, events: Sequence[FeedbackEvent]) -> list[str]:
    """Accepted suggestions in rank order, then added codes in the order first added."""
    latest = current_decisions(events)
    keep = {code for code, event in latest.items() if event.decision in ("accepted", "added")}
    suggested = [row.code for row in sorted(prediction.codes, key=lambda row: row.rank)]
    chosen = [code for code in suggested if code in keep]
    for event in sorted(events, key=lambda event: event.id):
        if event.code in keep and event.code not in chosen:
            chosen.append(event.code)
    return chosen


# -- export -------------------------------------------------------------------------------------


def count_reviewed_without_text(
    session: Session, *, created_from: datetime | None, created_to: datetime | None
) -> int:
    """Complete reviews the export leaves out because their note text is gone."""
    filters = PredictionFilters(reviewed=True, created_from=created_from, created_to=created_to)
    statement = _filtered(select(Prediction), filters).where(Prediction.note_text.is_(None))
    return int(session.scalar(statement.with_only_columns(func.count(Prediction.id))) or 0)


def count_incomplete_reviews(
    session: Session, *, created_from: datetime | None, created_to: datetime | None
) -> int:
    """Predictions with feedback whose review is not complete: the export leaves them out."""
    filters = PredictionFilters(created_from=created_from, created_to=created_to)
    statement = _filtered(select(Prediction), filters).where(_has_feedback(), _has_undecided())
    return int(session.scalar(statement.with_only_columns(func.count(Prediction.id))) or 0)


def iter_reviewed(
    sessions: sessionmaker[Session],
    *,
    created_from: datetime | None,
    created_to: datetime | None,
    page_size: int = 200,
) -> Iterator[tuple[Prediction, list[FeedbackEvent]]]:
    """Completely reviewed predictions that still have their text, oldest first, a page per
    session.

    Keyset paging on (created_at, id): rows added while the export runs cannot shift a page.
    """
    filters = PredictionFilters(reviewed=True, created_from=created_from, created_to=created_to)
    after: tuple[datetime, str] | None = None
    while True:
        statement = (
            _filtered(select(Prediction), filters)
            .where(Prediction.note_text.is_not(None))
            .options(selectinload(Prediction.codes), selectinload(Prediction.feedback))
            .order_by(Prediction.created_at, Prediction.id)
            .limit(page_size)
        )
        if after is not None:
            created_at, last_id = after
            statement = statement.where(
                or_(
                    Prediction.created_at > created_at,
                    and_(Prediction.created_at == created_at, Prediction.id > last_id),
                )
            )
        with sessions() as session:
            page: list[Prediction] = list(session.scalars(statement))
            for row in page:
                yield row, list(row.feedback)
        if len(page) < page_size:
            return
        after = (page[-1].created_at, page[-1].id)
