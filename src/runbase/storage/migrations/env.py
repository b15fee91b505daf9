"""Alembic environment: the URL comes from runbase's settings via `alembic_config`."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool

from runbase.storage.tables import Base

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
        context.run_migrations()
connectable.dispose()
