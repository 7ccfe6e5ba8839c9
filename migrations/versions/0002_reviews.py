"""reviews: a radiographer's series label, optional per-slice labels and a comment

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.db.types

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "review",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("series_id", sa.Integer(), nullable=False),
        sa.Column("api_key_id", sa.Integer(), nullable=False),
        sa.Column("reviewer", sa.String(length=200), nullable=False),
        sa.Column("label", sa.Integer(), nullable=False),
        sa.Column("model_label", sa.Integer(), nullable=True),
        sa.Column("model_probability", sa.Float(), nullable=True),
        sa.Column("model_version_id", sa.Integer(), nullable=True),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("created_at", app.db.types.UTCDateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["api_key_id"], ["api_key.id"], name=op.f("fk_review_api_key_id_api_key")
        ),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_version.id"],
            name=op.f("fk_review_model_version_id_model_version"),
        ),
        sa.ForeignKeyConstraint(
            ["series_id"], ["series.id"], name=op.f("fk_review_series_id_series")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review")),
    )
    with op.batch_alter_table("review", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_review_series_id"), ["series_id"], unique=False)

    op.create_table(
        "review_slice",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("review_id", sa.Integer(), nullable=False),
        sa.Column("instance_id", sa.Integer(), nullable=False),
        sa.Column("label", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["instance_id"], ["instance.id"], name=op.f("fk_review_slice_instance_id_instance")
        ),
        sa.ForeignKeyConstraint(
            ["review_id"], ["review.id"], name=op.f("fk_review_slice_review_id_review")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_review_slice")),
        sa.UniqueConstraint(
            "review_id", "instance_id", name=op.f("uq_review_slice_review_id_instance_id")
        ),
    )
    with op.batch_alter_table("review_slice", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_review_slice_review_id"), ["review_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("review_slice", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_review_slice_review_id"))
    op.drop_table("review_slice")
    with op.batch_alter_table("review", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_review_series_id"))
    op.drop_table("review")
