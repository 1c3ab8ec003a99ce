"""FHIR references: each prediction keeps the subject (patient) reference of the note it coded,
and predictions are indexed by encounter and by subject for the FHIR Condition/Procedure search.

Notes from the FHIR interface store their references as sent (`Patient/123`, `Encounter/9`,
`DocumentReference/note-1`) in `subject_reference`, `encounter_id` and `note_id`. Rows recorded
before this revision, and every JSON API prediction, keep NULL in `subject_reference`.

Downgrade drops the column `predictions.subject_reference` (the subject references are lost) and
the two indexes; it deletes no table.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DOWNGRADE_DROPS_TABLES: tuple[str, ...] = ()
DOWNGRADE_DROPS_COLUMNS: tuple[str, ...] = ("predictions.subject_reference",)


def upgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("subject_reference", sa.String(200), nullable=True))
        batch.create_index("ix_predictions_encounter_id", ["encounter_id"])
        batch.create_index("ix_predictions_subject_reference", ["subject_reference"])


def downgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.drop_index("ix_predictions_subject_reference")
        batch.drop_index("ix_predictions_encounter_id")
        batch.drop_column("subject_reference")
