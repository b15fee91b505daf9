"""The reaper's loop: every few seconds, in every server, recover lost and overdue runs
(`core.reaper` decides; this carries it out and tells whoever waits)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from sqlalchemy import Connection

from runbase.config import Settings
from runbase.core import idempotency, reaper
from runbase.dispatch.wakeup import WorkSignal, announce_work
from runbase.dispatch.worker import WorkerObserver
from runbase.storage.db import Database

logger = logging.getLogger(__name__)


async def reap_forever(
    database: Database,
    settings: Settings,
    stopping: asyncio.Event,
    observer: WorkerObserver | None = None,
    work: WorkSignal | None = None,
) -> None:
    """Recover lost and overdue runs, every few seconds, for as long as the server runs.

    A requeued run wakes idle workers at once: this process's (`work`) and, on PostgreSQL,
    every other process's (NOTIFY, in the reaper's transaction).
    """
    interval = max(0.2, min(5.0, settings.lease_seconds / 2))
    forget_keys_at = 0.0
    while not stopping.is_set():
        try:
            if time.monotonic() >= forget_keys_at:  # Idempotency-Keys are kept 24 hours
                await database.write(idempotency.forget_old_keys)
                forget_keys_at = time.monotonic() + 600
            report = await database.write(
                lambda connection: _reap(
                    connection,
                    max_attempts=settings.max_attempts,
                    max_processing_ms=int(settings.max_processing_seconds * 1000),
                )
            )
            if report.requeued and work is not None:
                work.notify()
            for run_id in report.requeued:
                logger.warning("run requeued after its worker was lost", extra={"run_id": run_id})
            for run_id in report.failed:
                logger.warning("run failed by the reaper", extra={"run_id": run_id})
            for run_id in report.canceled:
                logger.info("run canceled by the reaper", extra={"run_id": run_id})
            for run_id in (*report.requeued, *report.failed, *report.canceled):
                if observer is not None:
                    observer.run_changed(run_id)
        except Exception:
            logger.exception("reaping runs failed; will try again")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), interval)


def _reap(
    connection: Connection, *, max_attempts: int, max_processing_ms: int
) -> reaper.ReapReport:
    report = reaper.reap_runs(
        connection, max_attempts=max_attempts, max_processing_ms=max_processing_ms
    )
    if report.requeued:
        announce_work(connection)
    return report
