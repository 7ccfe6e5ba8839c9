"""what ran the network for each slice verdict

``instance_verdict.inference`` records the backend, precision and device that scored the slice
(e.g. ``onnxruntime-int8 (cpu)``): an int8 export and float32 give slightly different
AMAResNet probabilities and heatmaps, and a verdict should say which it is. Rows written before
this revision have null.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("instance_verdict", schema=None) as batch_op:
        batch_op.add_column(sa.Column("inference", sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("instance_verdict", schema=None) as batch_op:
        batch_op.drop_column("inference")
