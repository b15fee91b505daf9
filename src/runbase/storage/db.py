"""The database: engines, sessions, and how the server reaches them without blocking.

Data access is written as plain synchronous functions over a SQLAlchemy Core `Connection`
(`core/`), and the server runs them through `Database.read` and `Database.write`:

- SQLite (the embedded default) answers a primary-key read in microseconds, far less than
  a hop to a thread costs, so the server's reads run inline on the event loop, as Core
  queries on one long-lived connection (an ORM session per read would cost more than
  the whole rest of a GET). Reads that may touch many rows (lists, counts, `/metrics`)
  go through `Database.scan` instead, in a thread: the loop never waits on a scan
  (SQLite releases the GIL while it steps). It allows one
  writer at a time, so writes go to a single writer thread, each in a `BEGIN IMMEDIATE`
  transaction: they queue instead of failing with "database is locked", and no write can
  act on a snapshot that another writer has outdated. WAL mode lets reads run meanwhile.
- PostgreSQL takes reads and writes in a thread pool; guarded updates and row locks keep
  concurrent writers correct there.

Command-line tools use `Database.transaction()` directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event

from runbase.storage import write_check

T = TypeVar("T")
logger = logging.getLogger(__name__)


def sync_url(url: str) -> str:
    """The same database for synchronous drivers."""
    return (
        url.replace("sqlite+aiosqlite", "sqlite")
        .replace("postgresql+asyncpg", "postgresql+psycopg")
        .replace("postgresql://", "postgresql+psycopg://")
    )


class Database:
    """Holds the engines; built in the app's lifespan (or by a command), disposed at the end."""

    def __init__(self, url: str) -> None:
        self.url = sync_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        if self.is_sqlite:
            self._read_engine = _sqlite_engine(self.url, immediate=False)
            self._write_engine = _sqlite_engine(self.url, immediate=True)
        else:
            self._read_engine = create_engine(self.url, pool_size=10, max_overflow=20)
            self._write_engine = self._read_engine
        self._writer = _GroupCommitWriter(self._write_engine) if self.is_sqlite else None
        self._checkpointer = _Checkpointer(self._read_engine) if self.is_sqlite else None
        self._inline_reader: Connection | None = None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Connection]:
        """A write transaction: committed when the block ends, rolled back on error."""
        with self._write_engine.begin() as connection:
            yield connection

    @contextlib.contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection for reading; never commits."""
        with self._read_engine.connect() as connection:
            yield connection

    async def read(self, work: Callable[[Connection], T]) -> T:
        """Run `work(connection)`: a few Core reads by key (a primary or unique key, or an
        index range of a few rows); on SQLite inline on the event loop, so nothing else
        may go here (`scan`)."""
        if self.is_sqlite:
            if self._inline_reader is None:
                self._inline_reader = self._read_engine.connect().execution_options(
                    isolation_level="AUTOCOMMIT"
                )
            return work(self._inline_reader)
        return await asyncio.to_thread(self._read_pooled, work)

    async def scan(self, work: Callable[[Connection], T]) -> T:
        """Run `work(connection)`, a read that may touch many rows (a list, a count, usage
        figures), off the event loop on every database; `read` is only for reads by key."""
        return await asyncio.to_thread(self._read_pooled, work)

    async def write(self, work: Callable[[Connection], T]) -> T:
        """Run `work(connection)` in a write transaction, off the event loop.

        On SQLite, writes that arrive together share one transaction (group commit), each
        in its own savepoint: an error rolls back only its own work, and every caller
        hears back only after the commit.
        """
        if self._writer is not None:
            return await self._writer.submit(work)
        return await asyncio.to_thread(self._write, work)

    def _read_pooled(self, work: Callable[[Connection], T]) -> T:
        with self._read_engine.connect() as connection:
            return work(connection)

    def _write(self, work: Callable[[Connection], T]) -> T:
        with self.transaction() as connection:
            return _run_write(work, connection)

    def dispose(self) -> None:
        if self._inline_reader is not None:
            self._inline_reader.close()
            self._inline_reader = None
        if self._writer is not None:
            self._writer.close()
        if self._checkpointer is not None:
            self._checkpointer.close()
        self._read_engine.dispose()
        if self._write_engine is not self._read_engine:
            self._write_engine.dispose()


def _sqlite_engine(url: str, *, immediate: bool) -> Engine:
    """Writers start with BEGIN IMMEDIATE; readers run each statement on its own."""
    # Connections move between the event loop thread and the writer thread, never used
    # by two at once (the pool hands each to one user): hence check_same_thread off.
    engine = create_engine(
        url,
        pool_size=4,
        max_overflow=4,
        connect_args={"timeout": 30, "check_same_thread": False},
    )

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control from the driver so that BEGIN is ours to emit.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA busy_timeout=30000")
        # upgrade_database made the file WAL; switching here (a database made elsewhere)
        # would need the file to itself, so it is only tried when it is not WAL yet.
        if cursor.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        if immediate:  # writers never checkpoint: the Checkpointer does, beside them
            cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.close()

    if immediate:

        @event.listens_for(engine, "begin")
        def _begin(connection: Any) -> None:
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


class _Checkpointer:
    """Copies SQLite's write-ahead log back into the database file once a second, from its
    own thread and connection.

    SQLite would otherwise do it inside whichever commit finds the log over 4 MB, and a
    checkpoint syncs the file: tens of milliseconds during which that commit, and every
    create waiting on the writer, stands still. A PASSIVE checkpoint runs beside the writer
    without blocking it. Under unbroken writes the log never gets a quiet moment to start
    over, so past `restart_frames` a RESTART checkpoint holds the writer back once, briefly
    (the passive one has just copied nearly everything), and the log starts again.
    """

    def __init__(
        self, engine: Engine, interval_s: float = 1.0, restart_frames: int = 16_384
    ) -> None:
        self._restart_frames = restart_frames
        self._engine = engine
        self._interval_s = interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="runbase-db-checkpointer", daemon=True
        )
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            try:
                with self._engine.connect() as connection:
                    _, frames, _ = connection.exec_driver_sql(
                        "PRAGMA wal_checkpoint(PASSIVE)"
                    ).one()
                    if frames > self._restart_frames:
                        connection.exec_driver_sql("PRAGMA wal_checkpoint(RESTART)").one()
            except Exception:  # the next round tries again; the log only grows meanwhile
                logger.warning("WAL checkpoint failed", exc_info=True)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()


class _GroupCommitWriter:
    """SQLite's single writer: one thread that commits queued writes in batches.

    A commit costs more than a typical create; batching spreads it over every write that
    arrived while the previous batch ran, which is what lets concurrent creates scale.
    """

    _MAX_BATCH = 64

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._jobs: queue.SimpleQueue[_Job | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="runbase-db-writer", daemon=True)
        self._thread.start()

    async def submit(self, work: Callable[[Connection], T]) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        self._jobs.put(_Job(work, future, loop))
        return await future

    def close(self) -> None:
        self._jobs.put(None)
        self._thread.join()

    def _run(self) -> None:
        while True:
            first = self._jobs.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self._MAX_BATCH:
                try:
                    job = self._jobs.get_nowait()
                except queue.Empty:
                    break
                if job is None:
                    self._jobs.put(None)  # finish this batch, then stop
                    break
                batch.append(job)
            self._commit(batch)

    def _commit(self, batch: list[_Job]) -> None:
        """Commit the batch's writes together. Most writes succeed, so the batch first runs
        without savepoints (two statements per write saved); if one raises, all of it is
        rolled back and run again with a savepoint per write, so that only the failed
        write's own work is undone. Nothing is answered before its commit, so a write
        function may run twice: it must only touch the database."""
        try:
            outcomes = self._run_batch(batch, isolated=False)
        except _WriteFailed:
            try:
                outcomes = self._run_batch(batch, isolated=True)
            except Exception as exc:  # the commit itself failed: nothing was written
                outcomes = [(job, None, exc) for job in batch]
        except Exception as exc:
            outcomes = [(job, None, exc) for job in batch]
        for job, result, error in outcomes:
            job.loop.call_soon_threadsafe(_settle, job.future, result, error)

    def _run_batch(
        self, batch: list[_Job], *, isolated: bool
    ) -> list[tuple[_Job, Any, BaseException | None]]:
        outcomes: list[tuple[_Job, Any, BaseException | None]] = []
        with self._engine.begin() as connection:
            for job in batch:
                if isolated:
                    try:
                        with connection.begin_nested():
                            result = _run_write(job.work, connection)
                    except Exception as exc:
                        outcomes.append((job, None, exc))
                        continue
                else:
                    try:
                        result = _run_write(job.work, connection)
                    except Exception as exc:
                        raise _WriteFailed() from exc
                outcomes.append((job, result, None))
        return outcomes


def _run_write(work: Callable[[Connection], T], connection: Connection) -> T:
    """One write function, under the debug check that it only does database work
    (`storage.write_check`, on in tests): it may run twice."""
    if not write_check.is_enabled():  # production: the writer thread is the create's limit
        return work(connection)
    with write_check.inside_write():
        result = work(connection)
    write_check.check_result(result)
    return result


class _WriteFailed(Exception):
    """A write of an optimistic batch raised: run the batch again, isolated."""


class _Job:
    __slots__ = ("future", "loop", "work")

    def __init__(
        self,
        work: Callable[[Connection], Any],
        future: asyncio.Future[Any],
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self.work, self.future, self.loop = work, future, loop


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)
