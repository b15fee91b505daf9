"""Workers: claim pending runs, generate them in an engine process, record the outcome.

A worker's life for one run:
1. claim the oldest pending run (guarded update, lease);
2. heartbeat while the engine works, writing progress and logs at most once a second;
3. upload the files, then in one transaction mark the run succeeded, or failed and refunded.
The final write is shielded from cancellation so that shutting down cannot lose it. On
shutdown a worker puts its unfinished run back to pending for the next worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Row

from runbase.config import Settings
from runbase.core import runs
from runbase.core.clock import new_id
from runbase.dispatch.executor import ChildEvent, Done, EngineProcess, Log, RunTask, remove_scratch
from runbase.errors import GenerationFailed, RunFailure
from runbase.storage.blobs import BlobStore
from runbase.storage.db import Database

logger = logging.getLogger(__name__)


@dataclass
class _RunState:
    """What the engine reported since the last heartbeat."""

    fraction: float | None = None
    logs: list[str] = field(default_factory=list)
    is_lost: bool = False
    """Set when a heartbeat finds the run taken away (reaped): the engine is stopped."""


class Worker:
    def __init__(self, *, database: Database, blobs: BlobStore, settings: Settings) -> None:
        self.id = new_id("wrk")
        self._database = database
        self._blobs = blobs
        self._settings = settings
        self._engine = EngineProcess(settings)
        self._current: str | None = None
        self._stopping = asyncio.Event()

    @property
    def backend(self) -> str | None:
        return self._engine.backend

    async def run_forever(self, stopping: asyncio.Event) -> None:
        """Process runs until `stopping` is set; the engine starts on the first run.

        When `stopping` is set mid-run, the engine is asked to stop and the run goes back
        to the queue for the next worker, instead of failing.
        """
        self._stopping = stopping
        try:
            while not stopping.is_set():
                if not await self.process_next():
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(
                            stopping.wait(), self._settings.poll_interval_seconds
                        )
        finally:
            await asyncio.shield(self._release_current())
            await asyncio.to_thread(self._engine.close)

    async def process_next(self) -> bool:
        """Claim and process one run; False when none was pending."""
        run = await self._database.write(
            lambda connection: runs.claim_next_run(
                connection,
                worker_id=self.id,
                lease_ms=self._lease_ms,
                is_postgres=not self._database.is_sqlite,
            )
        )
        if run is None:
            return False
        self._current = run.id  # cleared once the outcome is recorded
        await self._process(run)
        return True

    @property
    def _lease_ms(self) -> int:
        return int(self._settings.lease_seconds * 1000)

    async def _process(self, run: Row[Any]) -> None:
        log = logger.getChild("run")
        log.info("run started", extra={"run_id": run.id, "action": "run_started"})
        state = _RunState()
        scratch = self._settings.data_dir / "scratch" / run.id
        started_ms = run.started_ms or 0
        remaining_s = (
            self._settings.max_processing_seconds - (time.time() * 1000 - started_ms) / 1000
        )
        deadline = time.monotonic() + max(0.0, remaining_s)
        heartbeat = asyncio.create_task(self._heartbeat(run.id, state))
        outcome: Done | RunFailure
        try:
            if not self._engine.is_alive:
                await self._engine.start()
                state.logs.extend(self._engine.notes)
            outcome = await self._engine.run(
                RunTask(run.id, run.model, run.input, scratch),
                deadline=deadline,
                on_event=lambda event: _record(state, event),
                should_cancel=lambda: state.is_lost or self._stopping.is_set(),
            )
        except RunFailure as failure:
            outcome = failure
        except Exception as exc:  # an infrastructure fault, e.g. the engine cannot start
            log.exception("run %s could not be processed", run.id)
            outcome = GenerationFailed(f"the run could not be processed: {exc}")
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
        try:
            if self._stopping.is_set() and not isinstance(outcome, Done):
                return  # shutting down: run_forever hands the run back to the queue
            await asyncio.shield(self._finish(run, outcome, state))
            self._current = None
        finally:
            await asyncio.to_thread(remove_scratch, scratch)

    async def _finish(self, run: Row[Any], outcome: Done | RunFailure, state: _RunState) -> None:
        backend = self._engine.backend
        if isinstance(outcome, Done):
            try:
                keys = []
                for path in outcome.files:
                    key = f"runs/{run.id}/{path.name}"
                    await self._blobs.put_file(key, path)
                    keys.append(key)
                is_recorded = await self._database.write(
                    lambda connection: runs.succeed_run(
                        connection,
                        run.id,
                        worker_id=self.id,
                        output_keys=keys,
                        backend=backend or "unknown",
                        logs=state.logs,
                    )
                )
                if is_recorded:
                    logger.info("run succeeded", extra={"run_id": run.id})
                    return
                logger.warning("run %s was taken from this worker; result dropped", run.id)
                return
            except Exception as exc:
                logger.exception("storing the output of run %s failed", run.id)
                outcome = GenerationFailed(f"storing the output failed: {exc}")
        failure = outcome
        await self._database.write(
            lambda connection: runs.fail_run(
                connection, run.id, failure, worker_id=self.id, backend=backend, logs=state.logs
            )
        )
        logger.info("run failed: %s", outcome.code, extra={"run_id": run.id})

    async def _heartbeat(self, run_id: str, state: _RunState) -> None:
        interval = min(1.0, self._settings.lease_seconds / 3)
        while True:
            await asyncio.sleep(interval)
            update_ = runs.ProgressUpdate(state.fraction, tuple(state.logs))
            state.logs.clear()
            is_ours = await self._database.write(
                lambda connection, update_=update_: runs.heartbeat_run(  # type: ignore[misc]
                    connection, run_id, worker_id=self.id, lease_ms=self._lease_ms, update_=update_
                )
            )
            if not is_ours:
                state.is_lost = True
                return

    async def _release_current(self) -> None:
        """Shutting down mid-run: hand the run back without using up one of its attempts."""
        run_id = self._current
        if run_id is None:
            return
        await self._database.write(
            lambda connection: runs.hand_back_run(connection, run_id, worker_id=self.id)
        )


def _record(state: _RunState, event: ChildEvent) -> None:
    if isinstance(event, Log):
        state.logs.append(event.message)
    else:
        state.fraction = event.fraction


async def reap_forever(database: Database, settings: Settings, stopping: asyncio.Event) -> None:
    """Recover lost and overdue runs, every few seconds, for as long as the server runs."""
    interval = max(0.2, min(5.0, settings.lease_seconds / 2))
    while not stopping.is_set():
        try:
            report = await database.write(
                lambda connection: runs.reap_runs(
                    connection,
                    max_attempts=settings.max_attempts,
                    max_processing_ms=int(settings.max_processing_seconds * 1000),
                )
            )
            for run_id in report.requeued:
                logger.warning("run requeued after its worker was lost", extra={"run_id": run_id})
            for run_id in report.failed:
                logger.warning("run failed by the reaper", extra={"run_id": run_id})
        except Exception:
            logger.exception("reaping runs failed; will try again")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), interval)
