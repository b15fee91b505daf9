"""Bring a database to the newest schema with Alembic (run before serving)."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import make_url

from runbase.storage.db import sync_url

_MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.set_main_option("sqlalchemy.url", sync_url(url))
    return config


def upgrade_database(url: str) -> None:
    """Apply every migration not yet applied; safe to call on every start.

    A SQLite database is put in WAL mode first, once, while nothing else has it open: the
    switch needs the file to itself, and made by whichever connection of a busy server
    comes first it fails at once with "database is locked" (no busy wait applies).
    """
    parsed = make_url(sync_url(url))
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        with contextlib.closing(sqlite3.connect(parsed.database, timeout=30)) as connection:
            connection.execute("PRAGMA journal_mode=WAL")
    command.upgrade(alembic_config(url), "head")
