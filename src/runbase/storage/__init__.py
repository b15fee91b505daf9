"""Persistence: the database (SQLAlchemy + Alembic) and the blob store for output files."""
