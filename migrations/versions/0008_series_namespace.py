"""series are namespaced by uploader: a Series Instance UID is unique per API key, not globally

A scanner that sent a Series Instance UID another key had used was answered 409 ("belongs to
another uploader"), which told it that the series exists. Now that UID starts a series of the
caller's own: ``series.series_uid`` is unique per ``uploader_key_id``, and a SOP Instance UID
is unique per series (``app.ingest.service`` keeps it once per uploader), with an index for
the look-ups by SOP Instance UID that the old unique constraint served.

Downgrading fails while two keys hold series (or instances) of the same UID: the old schema
cannot hold them.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("series", schema=None) as batch_op:
        batch_op.drop_constraint("uq_series_series_uid", type_="unique")
        batch_op.create_unique_constraint(
            "uq_series_uploader_key_id_series_uid", ["uploader_key_id", "series_uid"]
        )
    with op.batch_alter_table("instance", schema=None) as batch_op:
        batch_op.drop_constraint("uq_instance_sop_instance_uid_frame_index", type_="unique")
        batch_op.create_unique_constraint(
            "uq_instance_series_id_sop_instance_uid_frame_index",
            ["series_id", "sop_instance_uid", "frame_index"],
        )
        batch_op.create_index("ix_instance_sop_instance_uid", ["sop_instance_uid"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("instance", schema=None) as batch_op:
        batch_op.drop_index("ix_instance_sop_instance_uid")
        batch_op.drop_constraint(
            "uq_instance_series_id_sop_instance_uid_frame_index", type_="unique"
        )
        batch_op.create_unique_constraint(
            "uq_instance_sop_instance_uid_frame_index", ["sop_instance_uid", "frame_index"]
        )
    with op.batch_alter_table("series", schema=None) as batch_op:
        batch_op.drop_constraint("uq_series_uploader_key_id_series_uid", type_="unique")
        batch_op.create_unique_constraint("uq_series_series_uid", ["series_uid"])
