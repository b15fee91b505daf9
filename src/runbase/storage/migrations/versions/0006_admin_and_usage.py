"""admin and usage: audit log, deleted keys, credit notes, hourly and daily usage rollups

Additive only: new tables, nullable columns and one index on runs(created_ms).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 23:45:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "admin_audit",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=True),
        sa.Column("action", sa.String(length=40), nullable=False),
        sa.Column("target", sa.String(length=100), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("admin_audit", schema=None) as batch_op:
        batch_op.create_index("ix_admin_audit_created", ["created_ms"], unique=False)

    op.create_table(
        "usage_rollups",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("span", sa.String(length=8), nullable=False),
        sa.Column("bucket_ms", sa.BigInteger(), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("key_id", sa.String(length=40), nullable=False),
        sa.Column("model", sa.String(length=100), nullable=False),
        sa.Column("backend", sa.String(length=40), nullable=False),
        sa.Column("is_test", sa.Boolean(), nullable=False),
        sa.Column("succeeded", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("canceled", sa.Integer(), nullable=False),
        sa.Column("charged_micros", sa.BigInteger(), nullable=False),
        sa.Column("refunded_micros", sa.BigInteger(), nullable=False),
        sa.Column("upstream_cost_micros", sa.BigInteger(), nullable=True),
        sa.Column("queue_wait_hist", sa.LargeBinary(), nullable=False),
        sa.Column("generation_hist", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "span", "bucket_ms", "key_id", "model", "backend", "is_test", name="uq_usage_rollups"
        ),
    )
    op.create_table(
        "usage_failures",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("span", sa.String(length=8), nullable=False),
        sa.Column("bucket_ms", sa.BigInteger(), nullable=False),
        sa.Column("account_id", sa.String(length=40), nullable=False),
        sa.Column("key_id", sa.String(length=40), nullable=False),
        sa.Column("model", sa.String(length=100), nullable=False),
        sa.Column("backend", sa.String(length=40), nullable=False),
        sa.Column("is_test", sa.Boolean(), nullable=False),
        sa.Column("error_code", sa.String(length=40), nullable=False),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("usage_failures", schema=None) as batch_op:
        batch_op.create_index("ix_usage_failures_bucket", ["span", "bucket_ms"], unique=False)
    op.create_table(
        "usage_watermarks",
        sa.Column("span", sa.String(length=8), nullable=False),
        sa.Column("rolled_until_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("span"),
    )
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.add_column(sa.Column("deleted_ms", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("note", sa.String(length=500), nullable=True))
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index("ix_runs_created", ["created_ms"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_created")
    with op.batch_alter_table("ledger_entries", schema=None) as batch_op:
        batch_op.drop_column("note")
    with op.batch_alter_table("api_keys", schema=None) as batch_op:
        batch_op.drop_column("deleted_ms")
    op.drop_table("usage_watermarks")
    with op.batch_alter_table("usage_failures", schema=None) as batch_op:
        batch_op.drop_index("ix_usage_failures_bucket")
    op.drop_table("usage_failures")
    op.drop_table("usage_rollups")
    with op.batch_alter_table("admin_audit", schema=None) as batch_op:
        batch_op.drop_index("ix_admin_audit_created")
    op.drop_table("admin_audit")
