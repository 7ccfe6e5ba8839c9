"""the PACS outbox: each series verdict's DICOM report kept for each destination until accepted

A ``pacs_delivery`` row is written for every PACS destination (``AMAQC_PACS_DESTINATIONS``) once a
series verdict is stored; the worker sends the report (Structured Report + heatmap secondary
captures) with C-STORE and marks the row ``sent``, or keeps it ``pending`` with the error and
tries again with backoff (``app/pacs/outbox.py``).

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db.types

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "pacs_delivery",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("series_id", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=16), nullable=False),
        sa.Column("destination", sa.String(length=300), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", app.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("objects", sa.Integer(), nullable=False),
        sa.Column("sr_uid", sa.String(length=64), nullable=True),
        sa.Column("created_at", app.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("sent_at", app.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["series_id"], ["series.id"], name=op.f("fk_pacs_delivery_series_id_series")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pacs_delivery")),
        sa.UniqueConstraint(
            "series_id",
            "digest",
            "destination",
            name=op.f("uq_pacs_delivery_series_id_digest_destination"),
        ),
    )
    with op.batch_alter_table("pacs_delivery", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_pacs_delivery_next_attempt_at"), ["next_attempt_at"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_pacs_delivery_series_id"), ["series_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_pacs_delivery_status"), ["status"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("pacs_delivery", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_pacs_delivery_status"))
        batch_op.drop_index(batch_op.f("ix_pacs_delivery_series_id"))
        batch_op.drop_index(batch_op.f("ix_pacs_delivery_next_attempt_at"))

    op.drop_table("pacs_delivery")
