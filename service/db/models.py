"""The audit tables: predictions, the codes each returned, and coders' feedback events.

SQLAlchemy 2 typed tables, kept apart from the API's pydantic schemas (service/schemas.py).
Feedback events are append-only: nothing updates or deletes them; the latest per code wins.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    TypeDecorator,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

DECISIONS = ("accepted", "rejected", "added")


def utc_now() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return str(uuid.uuid4())


EARLIEST = datetime.min.replace(tzinfo=UTC)
LATEST = datetime.max.replace(tzinfo=UTC)


def to_utc(moment: datetime) -> datetime:
    """`moment` in UTC (naive read as UTC), clamped to the representable range.

    9999-12-31T23:59:59-14:00 is a valid date whose UTC form lies beyond year 9999, which Python
    cannot hold: as a bound it means "after everything", so it becomes the latest instant.
    """
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        return LATEST if moment.year > 1 else EARLIEST


class UTCDateTime(TypeDecorator[datetime]):
    """An aware UTC datetime on every backend.

    PostgreSQL keeps `timestamptz`; SQLite has no time zones, so values are stored as naive UTC
    and read back as aware, which keeps comparisons (date filters, retention) correct on both.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = to_utc(value)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    pass


class Prediction(Base):
    """One note scored by one model version, as the client received it."""

    __tablename__ = "predictions"
    __table_args__ = (
        Index("ix_predictions_created_at", "created_at"),
        Index("ix_predictions_note_id", "note_id"),
        # The FHIR searches (Condition?encounter=..., ?subject=...) look predictions up by these.
        Index("ix_predictions_encounter_id", "encounter_id"),
        Index("ix_predictions_subject_reference", "subject_reference"),
        # A retried request (same key holder, same Idempotency-Key) finds its predictions here;
        # NULL keys never collide.
        Index(
            "ux_predictions_idempotency",
            "client",
            "idempotency_key",
            "request_position",
            unique=True,
        ),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True, default=new_id)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)
    note_id: Mapped[str | None] = mapped_column(String(200))
    encounter_id: Mapped[str | None] = mapped_column(String(200))
    # The patient the note is about, as the FHIR reference the EHR sent (`Patient/123`); NULL for
    # notes sent to the JSON API, which has no subject field.
    subject_reference: Mapped[str | None] = mapped_column(String(200))
    # NULL when text storage is off or the retention purge has run; the sha256 always stays.
    note_text: Mapped[str | None] = mapped_column(Text)
    note_sha256: Mapped[str] = mapped_column(String(64))
    note_chars: Mapped[int] = mapped_column(Integer)
    model_name: Mapped[str] = mapped_column(String(200))
    model_version: Mapped[str] = mapped_column(String(100))
    top_k: Mapped[int] = mapped_column(Integer)
    elapsed_ms: Mapped[float] = mapped_column(Float)
    client: Mapped[str] = mapped_column(String(100))
    # The client's Idempotency-Key, the sha256 of the request it came with, and this note's
    # place in that request (0 for a single note).
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    request_sha256: Mapped[str | None] = mapped_column(String(64))
    request_position: Mapped[int | None] = mapped_column(Integer)
    # Why no code is above threshold (too little text the model knows), else NULL.
    abstention: Mapped[str | None] = mapped_column(Text)
    # When the response was handed to a client still connected; NULL: not confirmed (the client
    # had gone, or the database failed after the commit).
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    codes: Mapped[list[PredictedCode]] = relationship(
        back_populates="prediction", order_by="PredictedCode.rank", cascade="all, delete-orphan"
    )
    feedback: Mapped[list[FeedbackEvent]] = relationship(
        back_populates="prediction", order_by="FeedbackEvent.id"
    )


class PredictedCode(Base):
    """A code as ranked for a prediction; highlights hold offsets and weights, never text."""

    __tablename__ = "predicted_codes"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    prediction_id: Mapped[str] = mapped_column(
        ForeignKey("predictions.id", ondelete="CASCADE"), index=True
    )
    rank: Mapped[int] = mapped_column(Integer)
    code: Mapped[str] = mapped_column(String(20))
    description: Mapped[str] = mapped_column(Text)
    score: Mapped[float] = mapped_column(Float)
    above_threshold: Mapped[bool] = mapped_column(Boolean)
    # The code's decision threshold when predicted, so a coder sees why it is above or below;
    # NULL for predictions recorded before revision 0002.
    threshold: Mapped[float | None] = mapped_column(Float)
    # [{"start": int, "end": int, "weight": float}]: the text is cut from the note when shown,
    # so a purge or text storage turned off leaves no note text behind here.
    highlights: Mapped[list[dict[str, Any]]] = mapped_column(JSON)

    prediction: Mapped[Prediction] = relationship(back_populates="codes")


class FeedbackEvent(Base):
    """One coder decision on one code; append-only, ordered by id."""

    __tablename__ = "feedback_events"
    __table_args__ = (
        CheckConstraint(
            "decision IN ('accepted', 'rejected', 'added')", name="ck_feedback_events_decision"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    prediction_id: Mapped[str] = mapped_column(ForeignKey("predictions.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)
    coder_id: Mapped[str] = mapped_column(String(200))
    code: Mapped[str] = mapped_column(String(20))
    decision: Mapped[str] = mapped_column(String(10))
    comment: Mapped[str | None] = mapped_column(Text)
    client: Mapped[str] = mapped_column(String(100))

    prediction: Mapped[Prediction] = relationship(back_populates="feedback")
