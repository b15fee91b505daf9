"""The debug check that a write function only does database work (on in every test, from
conftest.py): group commit may run a write function twice, so a file written, a request
sent or a sleep inside one would happen twice, or hold the whole batch back."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Connection, text

from runbase.storage.db import Database
from runbase.storage.write_check import NotDatabaseWork


def then(effect: Callable[[], Any]) -> Callable[[Connection], Any]:
    def work(connection: Connection) -> Any:
        connection.execute(text("SELECT 1"))
        return effect()

    return work


def connect_to_loopback() -> None:
    with socket.socket() as sock:
        sock.connect(("127.0.0.1", 9))


async def test_database_work_passes(database: Database) -> None:
    assert await database.write(lambda c: c.execute(text("SELECT 41 + 1")).scalar()) == 42


@pytest.mark.parametrize(
    "effect",
    [
        lambda: time.sleep(0),
        lambda: Path(__file__).read_bytes(),
        connect_to_loopback,
    ],
    ids=["sleep", "file", "network"],
)
async def test_other_work_fails_the_write(database: Database, effect: Callable[[], Any]) -> None:
    with pytest.raises(NotDatabaseWork):
        await database.write(then(effect))
    # Writes beside it, in the same batch, still commit.
    answers = await asyncio.gather(
        database.write(then(effect)),
        database.write(lambda c: c.execute(text("SELECT 7")).scalar()),
        return_exceptions=True,
    )
    assert isinstance(answers[0], NotDatabaseWork) and answers[1] == 7


async def test_an_async_write_function_fails(database: Database) -> None:
    async def work(connection: Connection) -> int:
        return 1

    with pytest.raises(NotDatabaseWork):
        await database.write(work)  # type: ignore[arg-type]


def test_outside_a_write_function_nothing_is_refused(tmp_path: Path) -> None:
    time.sleep(0)
    (tmp_path / "x").write_text("fine")
