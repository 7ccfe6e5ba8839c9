"""the spectral network's probability with each slice verdict

``instance_verdict.spectral_probability`` is the artifact probability of the spectral network
(``model/spectral.py``: a small CNN on the slice's log k-space magnitude) where the served fused
detector reads it, so a verdict shows each of its inputs (AMAResNet's is ``cnn_probability``, the
panel's ``iqms``). Null for other detectors and for rows written before this revision.

Revision ID: 0013
Revises: 0012
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("instance_verdict", schema=None) as batch_op:
        batch_op.add_column(sa.Column("spectral_probability", sa.Float(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("instance_verdict", schema=None) as batch_op:
        batch_op.drop_column("spectral_probability")
