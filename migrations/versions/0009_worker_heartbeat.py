"""worker heartbeats: a killed worker's series is enqueued again within seconds, not minutes

Every process that runs tasks keeps a ``worker_heartbeat`` row fresh (``AMAQC_WORKER_HEARTBEAT_
SECONDS``) and ``series.worker`` names the process that marked a series ``processing``. The
sweeper enqueues again a series whose worker has been silent for ``AMAQC_WORKER_SILENT_SECONDS``,
and a ``queued`` one while an inference worker has been idle that long (its message was lost,
e.g. by a restarted broker), instead of waiting ``AMAQC_STUCK_AFTER_SECONDS``.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db.types

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "worker_heartbeat",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("queues", sa.String(length=200), nullable=False),
        sa.Column("started_at", app.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("beat_at", app.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("idle_since", app.db.types.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_worker_heartbeat")),
    )
    with op.batch_alter_table("series", schema=None) as batch_op:
        batch_op.add_column(sa.Column("worker", sa.String(length=200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("series", schema=None) as batch_op:
        batch_op.drop_column("worker")
    op.drop_table("worker_heartbeat")
