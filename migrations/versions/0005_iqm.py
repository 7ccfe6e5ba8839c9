"""detector v2: each instance verdict keeps the AMAResNet probability and the IQM panel

``probability`` stays the served detector's probability (the fused detector's, where the
checkpoint carries one); ``cnn_probability`` is AMAResNet's own, ``iqms`` the image-quality
metrics the fused detector read (null for rows written before this revision).

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("instance_verdict", schema=None) as batch_op:
        batch_op.add_column(sa.Column("cnn_probability", sa.Float(), nullable=True))
        batch_op.add_column(sa.Column("iqms", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("instance_verdict", schema=None) as batch_op:
        batch_op.drop_column("iqms")
        batch_op.drop_column("cnn_probability")
