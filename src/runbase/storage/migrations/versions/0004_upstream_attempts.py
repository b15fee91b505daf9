"""upstream_attempts: each try of a run at a provider, in the database instead of files

Additive only: a new table. The file records under `<data_dir>/upstream/` are no longer
read; a run that was in flight at ModelArk during the upgrade has no record here, so after
the upgrade it is treated as interrupted while submitting (failed and refunded, never
submitted twice).

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-02 09:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "upstream_attempts",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(length=40), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("provider", sa.String(length=40), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("task_id", sa.String(length=200), nullable=True),
        sa.Column("error_class", sa.String(length=32), nullable=True),
        sa.Column("error_message", sa.String(length=2000), nullable=True),
        sa.Column("cost_micros", sa.BigInteger(), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("submitted_ms", sa.BigInteger(), nullable=True),
        sa.Column("finished_ms", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("run_id", "number", name="uq_upstream_attempts_run_number"),
    )
    op.create_index(
        "ix_upstream_attempts_provider_created",
        "upstream_attempts",
        ["provider", "created_ms"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_upstream_attempts_provider_created", table_name="upstream_attempts")
    op.drop_table("upstream_attempts")
