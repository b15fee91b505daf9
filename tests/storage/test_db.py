"""The database layer: group commit, the WAL checkpointer, prepared statements (on SQLite,
and on PostgreSQL when RUNBASE_TEST_DATABASE_URL names one)."""

from __future__ import annotations

import asyncio
import re
import threading
import time
import tomllib
from pathlib import Path
from typing import Any, cast

import pytest
from sqlalchemy import Connection, Table, bindparam, func, insert, select, update

from runbase.core import billing, creation, listing
from runbase.core.keys import create_key, find_key
from runbase.storage import prepared
from runbase.storage.db import Database
from runbase.storage.migrate import upgrade_database
from runbase.storage.prepared import PreparedStatement
from runbase.storage.tables import AccountRow, RunRow
from support import TEST_DATABASE_URL, database_url_for

_ACCOUNTS = cast(Table, AccountRow.__table__)
_RUNS = cast(Table, RunRow.__table__)


@pytest.fixture
def database(tmp_path: Path) -> Any:
    url = database_url_for(tmp_path / "data")
    (tmp_path / "data").mkdir()
    upgrade_database(url)
    database = Database(url)
    yield database
    database.dispose()


def _add_account(name: str, *, fail: bool = False) -> Any:
    def work(connection: Connection) -> str:
        account = billing.create_account(connection, name=name, balance_micros=1)
        if fail:
            raise ValueError(f"refused {name}")
        return str(account.id)

    return work


async def test_a_failed_write_undoes_only_its_own_work(database: Database) -> None:
    """Writes that arrive together commit together; one that raises after writing leaves
    nothing behind, and the others are committed exactly once."""
    names = [f"account-{index}" for index in range(40)]
    outcomes = await asyncio.gather(
        *(
            database.write(_add_account(name, fail=index % 5 == 0))
            for index, name in enumerate(names)
        ),
        return_exceptions=True,
    )
    failed = [
        name
        for name, outcome in zip(names, outcomes, strict=True)
        if isinstance(outcome, Exception)
    ]
    assert failed == names[::5]
    with database.connect() as connection:
        stored = connection.execute(select(_ACCOUNTS.c.name).order_by(_ACCOUNTS.c.name)).scalars()
        assert sorted(stored) == sorted(set(names) - set(failed))


@pytest.mark.skipif(TEST_DATABASE_URL is not None, reason="SQLite's write-ahead log")
async def test_the_checkpointer_copies_the_log_into_the_database_file(
    database: Database, tmp_path: Path
) -> None:
    main_file = tmp_path / "data" / "runbase.db"
    before = main_file.stat().st_size
    for batch in range(20):
        await asyncio.gather(
            *(database.write(_add_account(f"a-{batch}-{index}")) for index in range(50))
        )
    # Writers never checkpoint, so until the checkpointer runs the rows are only in the log.
    assert main_file.stat().st_size == before
    deadline = time.monotonic() + 5
    while main_file.stat().st_size == before:
        assert time.monotonic() < deadline, "no checkpoint within 5 s"
        await asyncio.sleep(0.1)


def test_prepared_statements_convert_as_sqlalchemy_does(database: Database) -> None:
    """JSON, booleans, floats and None go in and come out as through connection.execute,
    and RETURNING rows, rowcounts and unlabelled columns work."""
    with database.transaction() as connection:
        account = billing.create_account(connection, name="prepared", balance_micros=10)
        key, secret = create_key(connection, account_id=account.id, daily_run_quota=5)
    with database.connect() as connection:
        key_record = find_key(connection, secret)
    assert key_record is not None
    with database.transaction() as connection:
        run = creation.create_run(
            connection,
            key=key_record,
            model="m",
            validated_input={"prompt": "ünïcode", "image_urls": [], "generate_audio": True},
            cost=3,
        )
        prepared_read = listing.get_run(connection, run.id, owner=key_record.owner)
        plain_read = connection.execute(listing.SELECT_RUNS.where(_RUNS.c.id == run.id)).one()
        assert tuple(prepared_read) == tuple(plain_read)
        assert prepared_read.input == {
            "prompt": "ünïcode",
            "image_urls": [],
            "generate_audio": True,
        }
        assert prepared_read.logs == [] and prepared_read.output_keys is None
        assert prepared_read.queue_position == 0

        count = PreparedStatement(select(func.count()).select_from(_RUNS))
        assert count.execute(connection, {}).scalar_one() == 1
        take = PreparedStatement(
            update(_ACCOUNTS)
            .where(
                _ACCOUNTS.c.id == bindparam("account"), _ACCOUNTS.c.balance_micros >= bindparam("n")
            )
            .values(balance_micros=_ACCOUNTS.c.balance_micros - bindparam("n"))
            .returning(_ACCOUNTS.c.balance_micros)
        )
        assert take.execute(connection, {"account": account.id, "n": 4}).one().balance_micros == 3
        refused = take.execute(connection, {"account": account.id, "n": 4})
        assert refused.rows == [] and refused.rowcount == 0
        PreparedStatement(insert(_ACCOUNTS)).execute(
            connection,
            {"id": "acct_x", "name": "x", "balance_micros": 0, "created_ms": 1},
        )
        assert (
            connection.execute(
                select(_ACCOUNTS.c.name).where(_ACCOUNTS.c.id == "acct_x")
            ).scalar_one()
            == "x"
        )
    del key


def test_sqlalchemy_is_held_below_3_while_prepared_statements_use_its_private_parts() -> None:
    """The parity test above checks today's SQLAlchemy; the pin keeps a major release, which
    may rename what `storage/prepared.py` calls, from installing unchecked."""
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    server = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]["server"]
    [requirement] = [r for r in server if re.match(r"sqlalchemy\b", r, re.IGNORECASE)]
    if "._cached_" in Path(prepared.__file__).read_text():
        assert "<3" in requirement.replace(" ", ""), requirement


async def test_scans_run_off_the_event_loop(database: Database) -> None:
    """Lists, counts and /metrics go through `scan`: never on the loop's thread, so a scan
    of many rows cannot stop every other request. Reads by key stay inline on SQLite."""
    loop_thread = threading.get_ident()
    assert await database.scan(lambda connection: threading.get_ident()) != loop_thread
    inline = await database.read(lambda connection: threading.get_ident())
    assert (inline == loop_thread) is database.is_sqlite
