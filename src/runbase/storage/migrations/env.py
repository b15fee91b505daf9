"""Alembic environment: the URL comes from runbase's settings via `alembic_config`.

On PostgreSQL the migrations run under a transaction-scoped advisory lock, taken before
the current revision is read: replicas that start together on one database queue here,
the first migrates, and the others then find nothing left to do (instead of racing to
create the same tables, which makes all but one crash).
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool, text

from runbase.storage.tables import Base

MIGRATION_LOCK = 0x72756E62617365  # "runbase": the advisory lock key of migrations

config = context.config
connectable = create_engine(config.get_main_option("sqlalchemy.url") or "", poolclass=pool.NullPool)
with connectable.connect() as connection:
    context.configure(
        connection=connection,
        target_metadata=Base.metadata,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
        context.run_migrations()
connectable.dispose()
