"""The database schema: one class per table, SQLAlchemy 2 typed rows.

Times are integer milliseconds since the epoch (UTC), so SQLite and PostgreSQL store and
compare them the same way. Money is integer micro-USD.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import JSON, BigInteger, ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class AccountRow(Base):
    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    balance_micros: Mapped[int] = mapped_column(BigInteger)
    created_ms: Mapped[int] = mapped_column(BigInteger)


class LedgerEntryRow(Base):
    """Append-only: an account's balance always equals the sum of its entries."""

    __tablename__ = "ledger_entries"
    # A run is charged at most once and refunded at most once, enforced by the database.
    __table_args__ = (UniqueConstraint("run_id", "kind", name="uq_ledger_run_kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    run_id: Mapped[str | None] = mapped_column(String(40))
    kind: Mapped[str] = mapped_column(String(16))
    amount_micros: Mapped[int] = mapped_column(BigInteger)
    created_ms: Mapped[int] = mapped_column(BigInteger)


class ApiKeyRow(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"), index=True)
    name: Mapped[str] = mapped_column(String(100))
    key_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    is_enabled: Mapped[bool] = mapped_column(default=True)
    spend_limit_cents: Mapped[int | None] = mapped_column(BigInteger)
    spent_micros: Mapped[int] = mapped_column(BigInteger, default=0)
    daily_run_quota: Mapped[int | None] = mapped_column(Integer)
    allowed_ips: Mapped[list[str]] = mapped_column(JSON, default=list)
    rate_limit: Mapped[str | None] = mapped_column(String(40))
    """Overrides the server's rate limit for this key, e.g. "100/second"."""
    created_ms: Mapped[int] = mapped_column(BigInteger)


class RunRow(Base):
    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_status_created", "status", "created_ms"),
        Index("ix_runs_key_created", "key_id", "created_ms"),
        Index("ix_runs_account_created", "account_id", "created_ms"),
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    key_id: Mapped[str] = mapped_column(ForeignKey("api_keys.id"))
    model: Mapped[str] = mapped_column(String(100))
    input: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16))
    cost_micros: Mapped[int] = mapped_column(BigInteger)
    backend: Mapped[str | None] = mapped_column(String(40))
    output_keys: Mapped[list[str] | None] = mapped_column(JSON)
    error_code: Mapped[str | None] = mapped_column(String(40))
    error_message: Mapped[str | None] = mapped_column(String(2000))
    progress: Mapped[float] = mapped_column(default=0.0)
    logs: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    started_ms: Mapped[int | None] = mapped_column(BigInteger)
    completed_ms: Mapped[int | None] = mapped_column(BigInteger)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    worker_id: Mapped[str | None] = mapped_column(String(60))
    lease_expires_ms: Mapped[int | None] = mapped_column(BigInteger)
