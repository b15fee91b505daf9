"""test and live apart (a test webhook secret per account, Idempotency-Keys per mode);
runs counted by status and model from an index

Test keys and live keys of one account see only their own mode's runs (as in Stripe), so
an Idempotency-Key used by a test key must not replay (or block) a live key's create, and
test runs' webhooks are signed with a secret of their own. Existing keys are live ones
(`is_test` false), as are the runs they name. `/metrics` counts runs by status and model:
the index lets it read the index instead of every row.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.add_column(sa.Column("test_webhook_secret", sa.String(length=64), nullable=True))
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("is_test", sa.Boolean(), server_default=sa.false(), nullable=False)
        )
        batch_op.drop_constraint("uq_idempotency_account_key", type_="unique")
        batch_op.create_unique_constraint(
            "uq_idempotency_account_mode_key", ["account_id", "is_test", "key"]
        )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index("ix_runs_status_model", ["status", "model"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_status_model")
    with op.batch_alter_table("idempotency_keys", schema=None) as batch_op:
        batch_op.drop_constraint("uq_idempotency_account_mode_key", type_="unique")
        batch_op.create_unique_constraint("uq_idempotency_account_key", ["account_id", "key"])
        batch_op.drop_column("is_test")
    with op.batch_alter_table("accounts", schema=None) as batch_op:
        batch_op.drop_column("test_webhook_secret")
