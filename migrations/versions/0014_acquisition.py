"""the acquisition family of each series, and the model version's threshold per family

``series.acquisition`` is the series' acquisition family (``model/acquisition.py``: ``epi``
for echo-planar diffusion / fMRI, ``non_epi`` otherwise), read at ingest from the DICOM header
(Scanning Sequence, Echo Planar Pulse Sequence, Image Type) or from the names a series carries;
null where nothing says. ``model_version.acquisition_thresholds`` is the served fused detector's
threshold per family (family -> value, from the checkpoint's metadata): where no
per-scanner / per-protocol row applies, a series of a known family gets its family's threshold
(threshold source ``acquisition``), else the version's own (``model``). Rows written before this
revision have null in both: one threshold for all, as before.

Revision ID: 0014
Revises: 0013
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("series", schema=None) as batch_op:
        batch_op.add_column(sa.Column("acquisition", sa.String(length=20), nullable=True))
    with op.batch_alter_table("model_version", schema=None) as batch_op:
        batch_op.add_column(sa.Column("acquisition_thresholds", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("model_version", schema=None) as batch_op:
        batch_op.drop_column("acquisition_thresholds")
    with op.batch_alter_table("series", schema=None) as batch_op:
        batch_op.drop_column("acquisition")
