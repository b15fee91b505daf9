"""Waking idle workers the moment there is work, instead of every poll interval.

    WorkSignal.notify()     a run became pending (created, requeued, handed back) or a
                            slot came free: every idle worker of this process wakes
    WorkSignal.wait(t)      sleep until notified, or `t` seconds (the polling fallback)
    listen_for_work(...)    PostgreSQL: LISTEN on `runbase_work`, so that a run created by
                            another process (an API replica) wakes this one's workers too;
                            `announce_work` is the NOTIFY, sent in the creating transaction
                            (delivered at its commit, never for a rollback)

On SQLite every writer is in this process or a CLI command beside it; the in-process
signal covers the server, and the poll interval covers the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from typing import Final

from sqlalchemy import Connection, text

logger = logging.getLogger(__name__)

CHANNEL: Final = "runbase_work"


class WorkSignal:
    """Wakes everyone waiting; lives on one event loop (`notify_threadsafe` from others)."""

    def __init__(self) -> None:
        self._waiters: set[asyncio.Future[None]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None

    def notify(self) -> None:
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def notify_threadsafe(self) -> None:
        if self._loop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self._loop.call_soon_threadsafe(self.notify)

    async def wait(self, timeout: float) -> bool:
        """True when notified, False after `timeout` seconds."""
        loop = asyncio.get_running_loop()
        self._loop = loop
        waiter: asyncio.Future[None] = loop.create_future()
        self._waiters.add(waiter)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter, max(0.0, timeout))
                return True
            return False
        finally:
            self._waiters.discard(waiter)


def announce_work(connection: Connection) -> None:
    """NOTIFY the other processes' workers, in this transaction (PostgreSQL only)."""
    if connection.dialect.name == "postgresql":
        connection.execute(text(f"NOTIFY {CHANNEL}"))


class WorkListener:
    """A thread that LISTENs on PostgreSQL and wakes this process's workers.

    It holds one connection of its own (psycopg, autocommit); when the connection breaks,
    it logs, waits and connects again, and the poll interval covers the gap.
    """

    def __init__(self, url: str, signal: WorkSignal, loop: asyncio.AbstractEventLoop) -> None:
        self._url = url
        self._signal = signal
        self._loop = loop
        self._stop = threading.Event()
        self._connection: object | None = None
        self._thread = threading.Thread(target=self._run, name="runbase-listen", daemon=True)

    def start(self) -> None:
        self._signal._loop = self._loop
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        import psycopg
        from sqlalchemy import make_url

        libpq_url = make_url(self._url).set(drivername="postgresql")
        conninfo = libpq_url.render_as_string(hide_password=False)
        while not self._stop.is_set():
            try:
                with psycopg.connect(conninfo, autocommit=True) as connection:
                    connection.execute(f"LISTEN {CHANNEL}")
                    while not self._stop.is_set():
                        for _ in connection.notifies(timeout=0.5, stop_after=64):
                            self._signal.notify_threadsafe()
            except Exception:
                logger.exception("listening for new runs on PostgreSQL failed; retrying")
                self._stop.wait(2.0)
