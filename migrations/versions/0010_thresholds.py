"""per-scanner / per-protocol thresholds, and the threshold source of each verdict

A ``threshold`` row replaces the active model version's threshold for the series of one scanner,
one protocol, or both (set by an admin or by ``amaqc calibrate --protocol``); each verdict
records where its threshold came from (``threshold_source``: ``scanner+protocol``,
``protocol``, ``scanner`` or ``model``) and the series verdict the row's scanner and protocol.
Verdicts written before this revision have null there.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db.types

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "threshold",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("scanner", sa.String(length=200), nullable=False),
        sa.Column("protocol", sa.String(length=200), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("origin", sa.String(length=20), nullable=False),
        sa.Column("set_by", sa.String(length=200), nullable=False),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("updated_at", app.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_threshold")),
        sa.UniqueConstraint("scanner", "protocol", name=op.f("uq_threshold_scanner_protocol")),
    )
    with op.batch_alter_table("series_verdict", schema=None) as batch_op:
        batch_op.add_column(sa.Column("threshold_source", sa.String(length=20), nullable=True))
        batch_op.add_column(sa.Column("threshold_scanner", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("threshold_protocol", sa.String(length=200), nullable=True))
    with op.batch_alter_table("instance_verdict", schema=None) as batch_op:
        batch_op.add_column(sa.Column("threshold_source", sa.String(length=20), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("instance_verdict", schema=None) as batch_op:
        batch_op.drop_column("threshold_source")
    with op.batch_alter_table("series_verdict", schema=None) as batch_op:
        batch_op.drop_column("threshold_protocol")
        batch_op.drop_column("threshold_scanner")
        batch_op.drop_column("threshold_source")
    op.drop_table("threshold")
