"""Audit tables: predictions, predicted codes and append-only feedback events.

Revision ID: 0001
Revises:
Create Date: 2024-06-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# What `downgrade` deletes: every table, so the whole audit log (plant-icd db downgrade asks for
# --yes-delete-data naming them).
DOWNGRADE_DROPS_TABLES: tuple[str, ...] = ("predictions", "predicted_codes", "feedback_events")
DOWNGRADE_DROPS_COLUMNS: tuple[str, ...] = ()


def upgrade() -> None:
    op.create_table(
        "predictions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("note_id", sa.String(200), nullable=True),
        sa.Column("encounter_id", sa.String(200), nullable=True),
        sa.Column("note_text", sa.Text(), nullable=True),
        sa.Column("note_sha256", sa.String(64), nullable=False),
        sa.Column("note_chars", sa.Integer(), nullable=False),
        sa.Column("model_name", sa.String(200), nullable=False),
        sa.Column("model_version", sa.String(100), nullable=False),
        sa.Column("top_k", sa.Integer(), nullable=False),
        sa.Column("elapsed_ms", sa.Float(), nullable=False),
        sa.Column("client", sa.String(100), nullable=False),
    )
    op.create_index("ix_predictions_created_at", "predictions", ["created_at"])
    op.create_index("ix_predictions_note_id", "predictions", ["note_id"])
    op.create_table(
        "predicted_codes",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column(
            "prediction_id",
            sa.String(36),
            sa.ForeignKey("predictions.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("rank", sa.Integer(), nullable=False),
        sa.Column("code", sa.String(20), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("above_threshold", sa.Boolean(), nullable=False),
        sa.Column("highlights", sa.JSON(), nullable=False),
    )
    op.create_index("ix_predicted_codes_prediction_id", "predicted_codes", ["prediction_id"])
    op.create_table(
        "feedback_events",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("prediction_id", sa.String(36), sa.ForeignKey("predictions.id"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("coder_id", sa.String(200), nullable=False),
        sa.Column("code", sa.String(20), nullable=False),
        sa.Column("decision", sa.String(10), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("client", sa.String(100), nullable=False),
        sa.CheckConstraint(
            "decision IN ('accepted', 'rejected', 'added')", name="ck_feedback_events_decision"
        ),
    )
    op.create_index("ix_feedback_events_prediction_id", "feedback_events", ["prediction_id"])


def downgrade() -> None:
    op.drop_index("ix_feedback_events_prediction_id", table_name="feedback_events")
    op.drop_table("feedback_events")
    op.drop_index("ix_predicted_codes_prediction_id", table_name="predicted_codes")
    op.drop_table("predicted_codes")
    op.drop_index("ix_predictions_note_id", table_name="predictions")
    op.drop_index("ix_predictions_created_at", table_name="predictions")
    op.drop_table("predictions")
