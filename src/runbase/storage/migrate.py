"""Bring a database to the newest schema with Alembic (run before serving)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from runbase.storage.db import sync_url

_MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.set_main_option("sqlalchemy.url", sync_url(url))
    return config


def upgrade_database(url: str) -> None:
    """Apply every migration not yet applied; safe to call on every start."""
    command.upgrade(alembic_config(url), "head")
