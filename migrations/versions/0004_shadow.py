"""shadow mode: a shadow flag on model versions and on verdicts (in their unique constraints)

Revision ID: 0004
Revises: 0003
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: (table, the column the verdict is of)
VERDICTS = (("instance_verdict", "instance_id"), ("series_verdict", "series_id"))


def upgrade() -> None:
    with op.batch_alter_table("model_version", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("shadow", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
    for table, of in VERDICTS:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column("shadow", sa.Boolean(), server_default=sa.false(), nullable=False)
            )
            batch_op.drop_constraint(f"uq_{table}_{of}_model_version_id", type_="unique")
            batch_op.create_unique_constraint(
                f"uq_{table}_{of}_model_version_id_shadow", [of, "model_version_id", "shadow"]
            )


def downgrade() -> None:
    for table, of in VERDICTS:
        # shadow rows have no place in the old schema (they could collide with the unique
        # constraint of a version that was activated after it shadowed)
        op.execute(sa.text(f"DELETE FROM {table} WHERE shadow"))
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(f"uq_{table}_{of}_model_version_id_shadow", type_="unique")
            batch_op.create_unique_constraint(
                f"uq_{table}_{of}_model_version_id", [of, "model_version_id"]
            )
            batch_op.drop_column("shadow")
    with op.batch_alter_table("model_version", schema=None) as batch_op:
        batch_op.drop_column("shadow")
