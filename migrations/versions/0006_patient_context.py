"""patient and study context from the DICOM header; provenance of review slice labels

Study: PatientID, PatientName, AccessionNumber, StudyDescription. Series: SeriesDescription,
ProtocolName, StationName, Manufacturer, ManufacturerModelName and the acquisition date-time
(ISO text in the scanner's local time, as the header gives it: DICOM times carry no zone).
All null for series without a DICOM header, and for rows written before this revision.

A review's slice label says who set it (``source``: ``reader``, or ``model`` when the reader
accepted the model's call), and a review says whether the reader confirmed the model-accepted
ones (``model_slices_confirmed``); retraining uses a model-accepted label only when confirmed.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("study", schema=None) as batch_op:
        batch_op.add_column(sa.Column("patient_id", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("patient_name", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("accession_number", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("study_description", sa.String(length=200), nullable=True))
    with op.batch_alter_table("series", schema=None) as batch_op:
        batch_op.add_column(sa.Column("series_description", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("protocol_name", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("station_name", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("manufacturer", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("manufacturer_model", sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column("acquired_at", sa.String(length=32), nullable=True))
    with op.batch_alter_table("review", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "model_slices_confirmed", sa.Boolean(), server_default=sa.false(), nullable=False
            )
        )
    with op.batch_alter_table("review_slice", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("source", sa.String(length=10), server_default="reader", nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("review_slice", schema=None) as batch_op:
        batch_op.drop_column("source")
    with op.batch_alter_table("review", schema=None) as batch_op:
        batch_op.drop_column("model_slices_confirmed")
    with op.batch_alter_table("series", schema=None) as batch_op:
        for name in (
            "acquired_at",
            "manufacturer_model",
            "manufacturer",
            "station_name",
            "protocol_name",
            "series_description",
        ):
            batch_op.drop_column(name)
    with op.batch_alter_table("study", schema=None) as batch_op:
        for name in ("study_description", "accession_number", "patient_name", "patient_id"):
            batch_op.drop_column(name)
