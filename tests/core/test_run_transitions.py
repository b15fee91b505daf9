"""Run status changes on a real SQLite database: guarded updates, leases, reaping, refunds."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from runbase.core import billing, keys, runs
from runbase.errors import GenerationFailed
from runbase.storage.db import Database
from runbase.storage.migrate import upgrade_database
from runbase.storage.tables import ApiKeyRow, LedgerEntryRow, RunRow

INPUT = {"prompt": "x", "aspect_ratio": "16:9", "resolution": "480p", "duration": "4"}


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    url = f"sqlite:///{tmp_path / 'runbase.db'}"
    upgrade_database(url)
    db = Database(url)
    yield db
    db.dispose()


def new_run(db: Database, cost: int = 1000) -> RunRow:
    with db.transaction() as session:
        account = billing.create_account(session, name="a", balance_micros=10_000)
        key, _ = keys.create_key(session, account_id=account.id)
        return runs.create_run(session, key=key, model="m", validated_input=INPUT, cost=cost)


def claim(db: Database, worker: str, lease_ms: int = 60_000) -> RunRow | None:
    with db.transaction() as session:
        return runs.claim_next_run(session, worker_id=worker, lease_ms=lease_ms, is_postgres=False)


def reap(db: Database, max_processing_ms: int = 60_000) -> runs.ReapReport:
    with db.transaction() as session:
        return runs.reap_runs(session, max_attempts=2, max_processing_ms=max_processing_ms)


async def test_claim_is_exclusive(database: Database) -> None:
    run = new_run(database)

    def claim_in(session: object, worker: str) -> RunRow | None:
        return runs.claim_next_run(
            session,  # type: ignore[arg-type]
            worker_id=worker,
            lease_ms=60_000,
            is_postgres=False,
        )

    claimed = await asyncio.gather(
        *(database.write(lambda s, w=f"w{i}": claim_in(s, w)) for i in range(10))
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
    with database.session() as session:
        row = session.get(RunRow, run.id)
        assert row is not None and row.status == "failed" and row.error_code == "worker_lost"
        kinds = list(session.scalars(select(LedgerEntryRow.kind).order_by(LedgerEntryRow.id)))
        assert kinds == ["top_up", "charge", "refund"]
        key = session.get(ApiKeyRow, row.key_id)
        assert key is not None and key.spent_micros == 0
    # A worker that comes back late cannot overwrite the reaper's decision.
    with database.transaction() as session:
        assert not runs.succeed_run(session, run.id, worker_id="w2", output_keys=["x"], backend="b")
        assert not runs.fail_run(session, run.id, GenerationFailed(), worker_id="w2")


def test_a_run_is_refunded_at_most_once(database: Database) -> None:
    run = new_run(database)
    with database.transaction() as session:
        assert runs.fail_run(session, run.id, GenerationFailed())
    with database.transaction() as session:
        assert not runs.fail_run(session, run.id, GenerationFailed())
    with database.session() as session:
        assert billing.ledger_total(session, run.account_id) == 10_000


def test_overdue_run_times_out(database: Database) -> None:
    run = new_run(database)
    claim(database, "w1")
    assert reap(database, max_processing_ms=-1).failed == (run.id,)
    with database.session() as session:
        row = session.get(RunRow, run.id)
        assert row is not None and row.error_code == "timeout"
