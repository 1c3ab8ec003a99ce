"""Idempotent retries and delivery: each prediction keeps the client's Idempotency-Key, a
fingerprint of the request, its place in the request, why the model abstained, and when its
response was handed to the client.

A key is unique per key holder (`client`) and position, so a retried request finds the
predictions it already made instead of making new ones. `delivered_at` stays NULL when the
service could not confirm that the response went out (the client had gone, or the database
failed afterwards); rows recorded before this revision are taken as delivered when created.

Downgrade drops those columns (stored keys, fingerprints, abstentions and delivery times are
lost); it deletes no table.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DOWNGRADE_DROPS_TABLES: tuple[str, ...] = ()
DOWNGRADE_DROPS_COLUMNS: tuple[str, ...] = (
    "predictions.idempotency_key",
    "predictions.request_sha256",
    "predictions.request_position",
    "predictions.abstention",
    "predictions.delivered_at",
)


def upgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.add_column(sa.Column("idempotency_key", sa.String(200), nullable=True))
        batch.add_column(sa.Column("request_sha256", sa.String(64), nullable=True))
        batch.add_column(sa.Column("request_position", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("abstention", sa.Text(), nullable=True))
        batch.add_column(sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_index(
            "ux_predictions_idempotency",
            ["client", "idempotency_key", "request_position"],
            unique=True,
        )
    op.execute("UPDATE predictions SET delivered_at = created_at")


def downgrade() -> None:
    with op.batch_alter_table("predictions") as batch:
        batch.drop_index("ux_predictions_idempotency")
        batch.drop_column("delivered_at")
        batch.drop_column("abstention")
        batch.drop_column("request_position")
        batch.drop_column("request_sha256")
        batch.drop_column("idempotency_key")
