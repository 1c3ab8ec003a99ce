"""Each predicted code keeps the decision threshold it was judged against.

The review page shows it beside the score, so a coder sees why a code at 0.22 is above its
threshold while one at 0.40 is below. Rows recorded before this revision keep NULL.

Downgrade drops the column `predicted_codes.threshold` (the recorded thresholds are lost); it
deletes no table.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# What `downgrade` deletes, for operators reading a downgrade plan (docs/OPERATIONS.md).
DOWNGRADE_DROPS_TABLES: tuple[str, ...] = ()
DOWNGRADE_DROPS_COLUMNS: tuple[str, ...] = ("predicted_codes.threshold",)


def upgrade() -> None:
    with op.batch_alter_table("predicted_codes") as batch:
        batch.add_column(sa.Column("threshold", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("predicted_codes") as batch:
        batch.drop_column("threshold")
