"""Races that must be lost gracefully, run where transactions really interleave:
PostgreSQL (`make test-postgres`), with every contender's transaction open and released at
the same instant by a barrier. (SQLite has one writer: its transactions never overlap, so
these races cannot happen there; the HTTP tests in test_money_concurrency.py cover it.)

    money   many keys of one account charge at once: exactly the runs the balance covers
    quota   one key's creates at once: exactly its daily quota
    claim   more workers than pending runs claim at once: each run once, every run claimed
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import pytest
from sqlalchemy import Connection, text

from runbase.core import billing, claims, creation, keys
from runbase.errors import InsufficientBalance, RunbaseError, UsageExceeded
from runbase.storage.db import Database
from support import TEST_DATABASE_URL, Admin, make_settings

T = TypeVar("T")
CONTENDERS = 16
COST = 1_000
INPUT = {"prompt": "x", "aspect_ratio": "16:9", "resolution": "480p", "duration": "4"}

pytestmark = pytest.mark.skipif(
    TEST_DATABASE_URL is None, reason="PostgreSQL (make test-postgres): SQLite never interleaves"
)


def race(database: Database, work: Callable[[Connection, int], T]) -> list[T | RunbaseError]:
    """`work(connection, i)` in CONTENDERS transactions that all begin, then all go at
    once; each commits (or rolls back on a refusal) on its own."""
    barrier = threading.Barrier(CONTENDERS)

    def contend(index: int) -> T | RunbaseError:
        try:
            with database.transaction() as connection:
                connection.execute(text("SELECT 1"))  # the transaction is open
                barrier.wait(timeout=60)
                return work(connection, index)
        except RunbaseError as refusal:
            return refusal

    with ThreadPoolExecutor(CONTENDERS) as pool:
        return list(pool.map(contend, range(CONTENDERS)))


def _keys(database: Database, account_id: str, count: int, **options: Any) -> list[Any]:
    found = []
    with database.transaction() as connection:
        for _ in range(count):
            _, secret = keys.create_key(connection, account_id=account_id, **options)
            found.append(keys.find_key(connection, secret))
    return found


def _account(database: Database, balance: int) -> str:
    with database.transaction() as connection:
        return str(billing.create_account(connection, name="racer", balance_micros=balance).id)


def _create(key: Any) -> Callable[[Connection, int], Any]:
    return lambda connection, _: creation.create_run(
        connection, key=key, model="m", validated_input=INPUT, cost=COST
    )


def test_charges_at_once_never_overdraw(database: Database, tmp_path: Path) -> None:
    affordable = 5
    account = _account(database, affordable * COST + COST // 2)
    # A key each: nothing but the account's row stands between the charges.
    contenders = _keys(database, account, CONTENDERS)
    outcomes = race(database, lambda c, i: _create(contenders[i])(c, i))
    refused = [o for o in outcomes if isinstance(o, RunbaseError)]
    assert all(isinstance(o, InsufficientBalance) for o in refused)
    assert len(outcomes) - len(refused) == affordable
    admin = Admin(make_settings(tmp_path))
    assert admin.balance(account) == COST // 2
    admin.check_books(account)


def test_creates_at_once_keep_the_daily_quota(database: Database, tmp_path: Path) -> None:
    quota = 3
    account = _account(database, 100 * COST)
    [key] = _keys(database, account, 1, daily_run_quota=quota)
    outcomes = race(database, _create(key))
    refused = [o for o in outcomes if isinstance(o, RunbaseError)]
    assert all(isinstance(o, UsageExceeded) for o in refused)
    assert len(outcomes) - len(refused) == quota
    Admin(make_settings(tmp_path)).check_books(account)


def test_workers_claiming_at_once_take_each_run_once(database: Database) -> None:
    pending = CONTENDERS // 2
    account = _account(database, 100 * COST)
    [key] = _keys(database, account, 1)
    with database.transaction() as connection:
        made = {_create(key)(connection, 0).id for _ in range(pending)}
    claimed = race(
        database,
        lambda connection, index: claims.claim_next_run(
            connection, worker_id=f"w{index}", lease_ms=60_000, is_postgres=True
        ),
    )
    ids = [run.id for run in claimed if run is not None and not isinstance(run, RunbaseError)]
    assert sorted(ids) == sorted(made)  # every run claimed, none twice
    assert all(run.attempts == 1 for run in claimed if run is not None)
