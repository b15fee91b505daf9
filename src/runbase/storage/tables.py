"""The database schema: one class per table, SQLAlchemy 2 typed rows.

Times are integer milliseconds since the epoch (UTC), so SQLite and PostgreSQL store and
compare them the same way. Money is integer micro-USD.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class AccountRow(Base):
    __tablename__ = "accounts"

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    name: Mapped[str] = mapped_column(String(100), unique=True)
    balance_micros: Mapped[int] = mapped_column(BigInteger)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    test_balance_micros: Mapped[int] = mapped_column(BigInteger, server_default=text("0"))
    """The balance that runs of test keys are charged against; it never runs out."""
    webhook_secret: Mapped[str | None] = mapped_column(String(64))
    """`whsec_...`: signs this account's webhook deliveries; made when first needed."""
    test_webhook_secret: Mapped[str | None] = mapped_column(String(64))
    """The same for the deliveries of test runs (test and live keep apart, as in Stripe)."""


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
    book: Mapped[str] = mapped_column(String(8), server_default="live")
    """"live" (the balance) or "test" (the test balance, for runs of test keys)."""
    note: Mapped[str | None] = mapped_column(String(500))
    """Why an operator added credits (admin API and `runbase credits add --note`)."""


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
    is_test: Mapped[bool] = mapped_column(server_default=false())
    """A test key (`sk-test-...`): its runs use the test engine and the test balance."""
    deleted_ms: Mapped[int | None] = mapped_column(BigInteger)
    """Deleted by an operator: disabled for good and left out of key lists; the row stays,
    because its runs and their usage still name it."""


class RunRow(Base):
    __tablename__ = "runs"
    __table_args__ = (
        Index("ix_runs_status_created", "status", "created_ms"),
        Index("ix_runs_key_created", "key_id", "created_ms"),
        Index("ix_runs_account_created", "account_id", "created_ms"),
        # The reaper looks for unfinished runs past their deadline: by status first, so
        # that finished runs, however many, are never scanned.
        Index("ix_runs_status_deadline", "status", "deadline_ms"),
        # The admin runs browser (all accounts, newest first) and the usage figures of
        # days not rolled up yet read runs by creation time alone.
        Index("ix_runs_created", "created_ms"),
        # `/metrics` counts runs by status and model: from this index alone (a fifth of
        # the time of a table scan), never from the rows.
        Index("ix_runs_status_model", "status", "model"),
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
    is_test: Mapped[bool] = mapped_column(server_default=false())
    cancel_requested: Mapped[bool] = mapped_column(server_default=false())
    """Set by the owner's cancel while processing; the worker sees it with its heartbeat."""
    deadline_ms: Mapped[int | None] = mapped_column(BigInteger)
    """From `Cancel-After`: a run not finished by then is canceled and refunded."""
    webhook: Mapped[str | None] = mapped_column(String(2000))
    webhook_events: Mapped[list[str] | None] = mapped_column(JSON)
    public_base_url: Mapped[str | None] = mapped_column(String(500))
    """The base URL the run was created through: output URLs in webhook bodies use it."""
    deleted_ms: Mapped[int | None] = mapped_column(BigInteger)
    """Deleted through a compatible API: hidden from the compatible APIs' get and list; the
    run, its charge and its files stay, and the Runbase API still shows it."""


class RunEventRow(Base):
    """A run's status and progress changes, numbered per run: the SSE stream replays them."""

    __tablename__ = "run_events"
    __table_args__ = (UniqueConstraint("run_id", "seq", name="uq_run_events_run_seq"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"))
    seq: Mapped[int] = mapped_column(Integer)
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    progress: Mapped[float]
    created_ms: Mapped[int] = mapped_column(BigInteger)


class IdempotencyKeyRow(Base):
    """An `Idempotency-Key` and the run it created; kept 24 hours per account and mode.

    Inserted in the same transaction as its run, so that the unique constraint, not the
    code, decides which of two concurrent requests with one key creates (and charges) it.
    """

    __tablename__ = "idempotency_keys"
    __table_args__ = (
        UniqueConstraint("account_id", "is_test", "key", name="uq_idempotency_account_mode_key"),
        Index("ix_idempotency_keys_created", "created_ms"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    key: Mapped[str] = mapped_column(String(255))
    is_test: Mapped[bool] = mapped_column(server_default=false())
    """Keys of test keys and of live keys are apart: one never replays the other's run."""
    request_hash: Mapped[str] = mapped_column(String(64))
    run_id: Mapped[str] = mapped_column(String(40))
    created_ms: Mapped[int] = mapped_column(BigInteger)


class WebhookDeliveryRow(Base):
    """One webhook message: its id is `webhook-id`, the same on every retry."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (Index("ix_webhook_deliveries_due", "status", "next_attempt_ms"),)

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    account_id: Mapped[str] = mapped_column(ForeignKey("accounts.id"))
    run_id: Mapped[str] = mapped_column(String(40), index=True)
    event: Mapped[str] = mapped_column(String(16))
    url: Mapped[str] = mapped_column(String(2000))
    snapshot: Mapped[dict[str, Any]] = mapped_column(JSON)
    """The run's row as the event left it: the body shows the run at its event, not later."""
    payload: Mapped[str | None] = mapped_column(Text)
    """The body, frozen at the first attempt so that every retry sends the same bytes."""
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_ms: Mapped[int] = mapped_column(BigInteger)
    last_error: Mapped[str | None] = mapped_column(String(500))
    created_ms: Mapped[int] = mapped_column(BigInteger)
    completed_ms: Mapped[int | None] = mapped_column(BigInteger)


class AdminAuditRow(Base):
    """One admin action (API or command line): who, what, when, from which address."""

    __tablename__ = "admin_audit"
    __table_args__ = (Index("ix_admin_audit_created", "created_ms"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    actor: Mapped[str] = mapped_column(String(100))
    """`admin-token:<fingerprint>` through the API, `cli:<user>@<host>` from the commands."""
    address: Mapped[str | None] = mapped_column(String(64))
    """The client's address (the API), None for the command line."""
    action: Mapped[str] = mapped_column(String(40))
    target: Mapped[str | None] = mapped_column(String(100))
    details: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class _UsageDimensions:
    """What a rollup row is of: a UTC hour or day, and one (key, model, backend, test or
    live) combination."""

    span: Mapped[str] = mapped_column(String(8))
    """"hour" or "day"."""
    bucket_ms: Mapped[int] = mapped_column(BigInteger)
    account_id: Mapped[str] = mapped_column(String(40))
    key_id: Mapped[str] = mapped_column(String(40))
    model: Mapped[str] = mapped_column(String(100))
    backend: Mapped[str] = mapped_column(String(40))
    """The run's `backend`, "" for runs that never reached an engine."""
    is_test: Mapped[bool]


class UsageRollupRow(_UsageDimensions, Base):
    """Usage of one settled hour or day for one combination: every run created in it had
    finished when it was rolled up, so it never changes (`core.usage_rollup`).
    Histograms are sparse bucket counts (`core.usage_sql.Histogram.to_bytes`)."""

    __tablename__ = "usage_rollups"
    __table_args__ = (
        UniqueConstraint(
            "span", "bucket_ms", "key_id", "model", "backend", "is_test", name="uq_usage_rollups"
        ),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    succeeded: Mapped[int] = mapped_column(Integer)
    failed: Mapped[int] = mapped_column(Integer)
    canceled: Mapped[int] = mapped_column(Integer)
    charged_micros: Mapped[int] = mapped_column(BigInteger)
    refunded_micros: Mapped[int] = mapped_column(BigInteger)
    upstream_cost_micros: Mapped[int | None] = mapped_column(BigInteger)
    """What the providers charged for these runs; None where nothing was recorded."""
    queue_wait_hist: Mapped[bytes] = mapped_column(LargeBinary)
    generation_hist: Mapped[bytes] = mapped_column(LargeBinary)


class UsageFailuresRow(_UsageDimensions, Base):
    """Failed runs of a `usage_rollups` row, by error code."""

    __tablename__ = "usage_failures"
    __table_args__ = (Index("ix_usage_failures_bucket", "span", "bucket_ms"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    error_code: Mapped[str] = mapped_column(String(40))
    runs: Mapped[int] = mapped_column(Integer)


class UsageWatermarkRow(Base):
    """One row per span: its buckets before `rolled_until_ms` are in `usage_rollups`; later
    ones are read from the runs themselves."""

    __tablename__ = "usage_watermarks"

    span: Mapped[str] = mapped_column(String(8), primary_key=True)
    rolled_until_ms: Mapped[int] = mapped_column(BigInteger)


class UpstreamAttemptRow(Base):
    """One try of a run at one provider (`providers/`), written before and after its submit.

    A run retried on any machine reads its attempts here: an `accepted` attempt is resumed
    (its task polled, never submitted again); a `submitting` one was interrupted mid-submit
    (submitted again with the same idempotency key where the provider takes one, else the
    run fails refunded). `cost_micros` is what the attempt cost upstream, from the
    provider's price table: the usage report reads it beside the run's price.
    """

    __tablename__ = "upstream_attempts"
    __table_args__ = (
        UniqueConstraint("run_id", "number", name="uq_upstream_attempts_run_number"),
        Index("ix_upstream_attempts_provider_created", "provider", "created_ms"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(ForeignKey("runs.id"))
    number: Mapped[int] = mapped_column(Integer)
    """1 for the run's first provider, 2 for the next one it failed over to, ..."""
    provider: Mapped[str] = mapped_column(String(40))
    state: Mapped[str] = mapped_column(String(16))
    """providers.AttemptState: submitting, accepted, succeeded, failed, canceled, uncertain."""
    task_id: Mapped[str | None] = mapped_column(String(200))
    """The provider's id for the task, once it accepted it."""
    error_class: Mapped[str | None] = mapped_column(String(32))
    """How it failed (providers.ProviderFailure.error_class: not_accepted, task_failed,
    content_refused, input_unsupported, submit_uncertain), or timeout, canceled."""
    error_message: Mapped[str | None] = mapped_column(String(2000))
    cost_micros: Mapped[int | None] = mapped_column(BigInteger)
    """Upstream cost of this attempt (price table); set when it ends."""
    created_ms: Mapped[int] = mapped_column(BigInteger)
    """Written, before the submit was sent."""
    submitted_ms: Mapped[int | None] = mapped_column(BigInteger)
    """The provider accepted the task (its id recorded)."""
    finished_ms: Mapped[int | None] = mapped_column(BigInteger)
