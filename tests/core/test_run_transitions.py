"""Run status changes on a real database: guarded updates, leases, reaping, refunds.

SQLite, or PostgreSQL under `make test-postgres`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from sqlalchemy import Connection, select

from runbase.core import billing, claims, creation, keys, reaper, runs
from runbase.errors import GenerationFailed
from runbase.storage.db import Database
from runbase.storage.tables import ApiKeyRow, LedgerEntryRow, RunRow

INPUT = {"prompt": "x", "aspect_ratio": "16:9", "resolution": "480p", "duration": "4"}


def new_run(db: Database, cost: int = 1000) -> Any:
    with db.transaction() as connection:
        account = billing.create_account(connection, name="a", balance_micros=10_000)
        key = keys.find_key(connection, keys.create_key(connection, account_id=account.id)[1])
        assert key is not None
        return creation.create_run(connection, key=key, model="m", validated_input=INPUT, cost=cost)


def claim(db: Database, worker: str, lease_ms: int = 60_000) -> Any:
    with db.transaction() as connection:
        return claims.claim_next_run(
            connection, worker_id=worker, lease_ms=lease_ms, is_postgres=not db.is_sqlite
        )


def reap(db: Database, max_processing_ms: int = 60_000) -> reaper.ReapReport:
    with db.transaction() as connection:
        return reaper.reap_runs(connection, max_attempts=2, max_processing_ms=max_processing_ms)


def read_run(db: Database, run_id: str) -> Any:
    with db.connect() as connection:
        return connection.execute(select(RunRow.__table__).where(RunRow.id == run_id)).one()


async def test_claim_is_exclusive(database: Database) -> None:
    run = new_run(database)

    def claim_in(connection: Connection, worker: str) -> Any:
        return claims.claim_next_run(
            connection, worker_id=worker, lease_ms=60_000, is_postgres=not database.is_sqlite
        )

    claimed = await asyncio.gather(
        *(database.write(lambda c, w=f"w{i}": claim_in(c, w)) for i in range(10))  # type: ignore[misc]
    )
    winners = [c for c in claimed if c is not None]
    assert len(winners) == 1 and winners[0].id == run.id
    assert winners[0].status == "processing" and winners[0].attempts == 1


def test_lost_worker_is_retried_once_then_failed_and_refunded(database: Database) -> None:
    run = new_run(database)
    assert claim(database, "w1", lease_ms=-1) is not None  # lease already expired
    assert reap(database).requeued == (run.id,)
    again = claim(database, "w2", lease_ms=-1)
    assert again is not None and again.attempts == 2
    assert reap(database).failed == (run.id,)
    row = read_run(database, run.id)
    assert row.status == "failed" and row.error_code == "worker_lost"
    with database.connect() as connection:
        kinds = connection.execute(
            select(LedgerEntryRow.kind).order_by(LedgerEntryRow.id)
        ).scalars()
        assert list(kinds) == ["top_up", "charge", "refund"]
        spent = connection.execute(
            select(ApiKeyRow.spent_micros).where(ApiKeyRow.id == row.key_id)
        ).scalar_one()
        assert spent == 0
    # A worker that comes back late cannot overwrite the reaper's decision.
    with database.transaction() as connection:
        assert not runs.succeed_run(
            connection, run.id, worker_id="w2", output_keys=["x"], backend="b"
        )
        assert not runs.fail_run(connection, run.id, GenerationFailed(), worker_id="w2")


def test_a_run_is_refunded_at_most_once(database: Database) -> None:
    run = new_run(database)
    claim(database, "w1")
    with database.transaction() as connection:
        assert runs.fail_run(connection, run.id, GenerationFailed(), worker_id="w1")
    with database.transaction() as connection:
        assert not runs.fail_run(connection, run.id, GenerationFailed(), worker_id="w1")
    with database.connect() as connection:
        assert billing.ledger_total(connection, run.account_id) == 10_000


def test_overdue_run_times_out(database: Database) -> None:
    run = new_run(database)
    claim(database, "w1")
    assert reap(database, max_processing_ms=-1).failed == (run.id,)
    assert read_run(database, run.id).error_code == "timeout"


async def test_group_commit_isolates_a_failing_write(database: Database) -> None:
    """Writes that share a transaction keep their own fate: one error undoes only itself."""
    run = new_run(database)

    def fail_then_crash(connection: Connection) -> bool:
        assert runs.cancel_run(connection, run.id, "x", only_pending=True)  # a write, then an error
        raise RuntimeError("boom")

    def rename(connection: Connection) -> bool:
        return bool(
            connection.execute(
                RunRow.__table__.update().where(RunRow.id == run.id).values(model="renamed")
            ).rowcount
        )

    results = await asyncio.gather(
        database.write(fail_then_crash), database.write(rename), return_exceptions=True
    )
    assert isinstance(results[0], RuntimeError) and results[1] is True
    row = read_run(database, run.id)
    assert row.status == "pending" and row.model == "renamed"
    with database.connect() as connection:
        assert billing.ledger_total(connection, run.account_id) == 10_000 - 1000
