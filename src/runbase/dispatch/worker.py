"""Workers: claim pending runs, generate them on an engine host, record the outcome.

A worker's life for one run:
1. claim the oldest pending run (guarded update, lease);
2. heartbeat while the engine works, writing progress and logs at most once a second;
3. upload the files, then in one transaction mark the run succeeded, or failed and refunded.
The final write is shielded from cancellation so that shutting down cannot lose it. On
shutdown a worker puts its unfinished run back to pending for the next worker. When the
engine's host vanishes (a Ray actor or node), the worker gives up the run's lease at once:
the reaper retries it or fails it with `worker_lost`, as for a lost worker.

A run whose owner asked to cancel it (the heartbeat says so), or whose Cancel-After
deadline passes, has its engine stopped and ends `canceled`, refunded. Runs of test keys go
to a second engine process with the test engine (`Settings.test_engine`), and a failure
marker in their prompt makes them fail on purpose (`core.testmode`).

These are the compute workers (the compute station of the route, `dispatch.routing`): when
the route starts with a provider they claim only test runs, and take the live runs that the
provider gateway hands them (`take_over`). An idle worker sleeps until a run is created
(`dispatch.wakeup.WorkSignal`), polling as the fallback. A database fault while claiming or
heartbeating is logged with its traceback and retried; it never ends the worker.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from runbase.config import Settings
from runbase.core import claims, runs, testmode
from runbase.core.clock import new_id, now_ms
from runbase.core.run_view import Run
from runbase.dispatch.engine_hosts import open_engine
from runbase.dispatch.executor import (
    ChildEvent,
    Done,
    EngineHost,
    EngineLost,
    Log,
    RunTask,
    output_key,
    remove_scratch,
)
from runbase.dispatch.wakeup import WorkSignal
from runbase.errors import EngineUnavailable, GenerationFailed, RunFailure
from runbase.storage.blobs import BlobStore
from runbase.storage.db import Database
from runbase.storage.inputs import restore_images

logger = logging.getLogger(__name__)


@dataclass
class _RunState:
    """What the engine reported since the last heartbeat."""

    fraction: float | None = None
    sent_fraction: float | None = None
    logs: list[str] = field(default_factory=list)
    is_lost: bool = False
    """Set when a heartbeat finds the run taken away (reaped): the engine is stopped."""
    cancel_reason: str | None = None
    """Set when the run is to be canceled (owner's request, Cancel-After): the engine is
    stopped and the run ends canceled."""


class WorkerObserver(Protocol):
    """Who hears about a worker's runs in this process (the server's waiters and metrics)."""

    def run_changed(self, run_id: str) -> None:
        """The run's status or progress was just written."""

    def engine_used(self, model: str, backend: str | None, seconds: float) -> None:
        """An engine spent `seconds` on one run."""


class _NoObserver:
    def run_changed(self, run_id: str) -> None:
        pass

    def engine_used(self, model: str, backend: str | None, seconds: float) -> None:
        pass


class ComputeStation:
    """Whether the route's compute engines start, as the workers of this process found.

    `problem` is None while they work (or nobody tried yet: `is_known` says which), else
    the reason none of them started. Read by the gateway (a route can fall back to
    providers) and by /readyz and creates (fail fast rather than charge and fail).
    """

    def __init__(self) -> None:
        self.is_known = False
        self.problem: str | None = None

    def report(self, problem: str | None) -> None:
        self.is_known, self.problem = True, problem

    def usable(self) -> bool | None:
        return None if not self.is_known else self.problem is None


class Worker:
    def __init__(
        self,
        *,
        database: Database,
        blobs: BlobStore,
        settings: Settings,
        observer: WorkerObserver | None = None,
        work: WorkSignal | None = None,
        station: ComputeStation | None = None,
        claim_filter: Callable[[], bool | Literal["none"] | None] = lambda: None,
    ) -> None:
        """`claim_filter` says which pending runs this worker claims: None any, True test
        runs only, "none" none (it only takes runs handed to it)."""
        self.id = new_id("wrk")
        self._database = database
        self._blobs = blobs
        self._settings = settings
        self._engine = open_engine(settings)
        self._test_engine: EngineHost | None = None  # started for the first test run
        self._observer = observer or _NoObserver()
        self._work = work or WorkSignal()
        self.station = station or ComputeStation()
        self._claim_filter = claim_filter
        self._current: str | None = None
        self._inbox: list[Run] = []
        self._stopping = asyncio.Event()
        self._engine_lock = asyncio.Lock()  # one start at a time (a probe, a run)
        self.probe_at_start = False
        """Start the engine before the first run, to learn whether the station works."""

    @property
    def backend(self) -> str | None:
        return self._engine.backend

    @property
    def is_idle(self) -> bool:
        return self._current is None and not self._inbox

    def take_over(self, run: Run) -> None:
        """Process `run` next: the gateway has just transferred it to this worker."""
        self._inbox.append(run)
        self._current = run.id
        self._work.notify()

    async def probe_engine(self) -> None:
        """Start the engine now, to learn whether the compute station works."""
        try:
            async with self._engine_lock:
                if not self._engine.is_alive:
                    await self._engine.start()
            self.station.report(None)
        except Exception as exc:
            logger.warning("the compute engine did not start: %s", exc)
            self.station.report(_engine_problem(exc))

    async def run_forever(self, stopping: asyncio.Event) -> None:
        """Process runs until `stopping` is set; the engine starts on the first run.

        When `stopping` is set mid-run, the engine is asked to stop and the run goes back
        to the queue for the next worker, instead of failing.
        """
        self._stopping = stopping
        failures = 0
        try:
            if self.probe_at_start and not self.station.is_known:
                await self.probe_engine()
            while not stopping.is_set():
                try:
                    worked = await self.process_next()
                    failures = 0
                except Exception:  # the database or storage failed: log, back off, go on
                    failures += 1
                    logger.exception("worker %s: processing the next run failed", self.id)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stopping.wait(), min(30.0, 0.5 * 2**failures))
                    continue
                if not worked:
                    await self._work.wait(self._settings.poll_interval_seconds)
        finally:
            await asyncio.shield(self._release_current())
            async with self._engine_lock:  # a probe still starting it: wait, then close
                await asyncio.to_thread(self._engine.close)
            if self._test_engine is not None:
                await asyncio.to_thread(self._test_engine.close)

    async def process_next(self) -> bool:
        """Process a run handed over, or claim and process one; False when none was."""
        if self._inbox:
            run = self._inbox.pop(0)
        else:
            which = self._claim_filter()
            if which == "none":
                return False
            claimed = await self._database.write(
                lambda connection: claims.claim_runs(
                    connection,
                    worker_id=self.id,
                    lease_ms=self._lease_ms,
                    is_postgres=not self._database.is_sqlite,
                    is_test=which if isinstance(which, bool) else None,
                )
            )
            if not claimed:
                return False
            run = claimed[0]
        self._current = run.id  # cleared once the outcome is recorded
        self._observer.run_changed(run.id)
        try:
            await self._process(run)
        finally:
            self._observer.run_changed(run.id)
        return True

    def _engine_for(self, run: Run) -> EngineHost:
        if not run.is_test:
            return self._engine
        if self._test_engine is None:
            test_settings = self._settings.model_copy(  # GPUs as the test engine needs
                update={"engines": [self._settings.test_engine], "ray_num_gpus": None}
            )
            self._test_engine = open_engine(test_settings)
        return self._test_engine

    def _should_cancel(self, run: Run, state: _RunState) -> bool:
        if state.cancel_reason is None and _past_deadline(run):
            state.cancel_reason = "the run passed its Cancel-After deadline"
        return state.is_lost or self._stopping.is_set() or state.cancel_reason is not None

    @property
    def _lease_ms(self) -> int:
        return int(self._settings.lease_seconds * 1000)

    async def _process(self, run: Run) -> None:
        log = logger.getChild("run")
        log.info("run started", extra={"run_id": run.id, "action": "run_started"})
        state = _RunState()
        scratch = self._settings.data_dir / "scratch" / run.id
        started_ms = run.started_ms or 0
        remaining_s = (
            self._settings.max_processing_seconds - (time.time() * 1000 - started_ms) / 1000
        )
        deadline = time.monotonic() + max(0.0, remaining_s)
        heartbeat = asyncio.create_task(self._heartbeat(run, state))
        engine = self._engine_for(run)
        fail_with = testmode.requested_failure(run.input) if run.is_test else None
        engine_started = time.monotonic()
        outcome: Done | RunFailure | EngineLost
        try:
            async with self._engine_lock:
                if not engine.is_alive:
                    try:
                        await self._start(engine)
                    except EngineLost:  # told to stop while starting: not the engine's fault
                        raise
                    except Exception as exc:
                        if engine is self._engine:
                            self.station.report(_engine_problem(exc))
                        raise
                    if engine is self._engine:
                        self.station.report(None)
                    state.logs.extend(engine.notes)
                    engine_started = time.monotonic()
            # Images stored at creation go back in as the client sent them: every engine
            # gets the exact input.
            run_input = await restore_images(self._blobs, run.input)
            outcome = await engine.run(
                RunTask(run.id, run.model, run_input, scratch, fail_with=fail_with),
                deadline=deadline,
                on_event=lambda event: _record(state, event),
                should_cancel=lambda: self._should_cancel(run, state),
            )
        except (RunFailure, EngineLost) as failure:
            outcome = failure
        except EngineUnavailable as exc:  # no engine of the list starts: say which and why
            log.error("run %s: no engine could start: %s", run.id, exc.message)
            outcome = GenerationFailed(f"no engine could start to make the video: {exc.message}")
        except Exception:  # an infrastructure fault: the details go to the log, not the user
            log.exception("run %s could not be processed", run.id)
            outcome = GenerationFailed("the server failed while preparing the engine")
        finally:
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            self._observer.engine_used(run.model, engine.backend, time.monotonic() - engine_started)
        try:
            if (
                self._stopping.is_set()
                and not isinstance(outcome, Done)
                and state.cancel_reason is None
            ):
                return  # shutting down: run_forever hands the run back to the queue
            if isinstance(outcome, EngineLost):
                await asyncio.shield(self._give_up(run, state, outcome))
            else:
                await asyncio.shield(self._finish(run, engine.backend, outcome, state))
            self._current = None
        finally:
            await asyncio.to_thread(remove_scratch, scratch)

    async def _start(self, engine: EngineHost) -> None:
        """Start the engine, unless the worker is told to stop first: set-up can take
        minutes (weights to load, a Ray actor waiting for a free GPU), and a stopping
        worker hands its run back at once."""
        starting = asyncio.create_task(engine.start())
        stopping = asyncio.create_task(self._stopping.wait())
        try:
            await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if not starting.done():
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            await asyncio.to_thread(engine.kill)
            raise EngineLost("the worker stopped while its engine was starting")
        starting.result()

    async def _finish(
        self, run: Run, backend: str | None, outcome: Done | RunFailure, state: _RunState
    ) -> None:
        if isinstance(outcome, Done):
            try:
                keys = list(outcome.stored_keys)
                for path in outcome.files:
                    key = output_key(run.id, path)
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
            except Exception:
                logger.exception("storing the output of run %s failed", run.id)
                outcome = GenerationFailed("storing the video failed")
        failure = outcome
        reason = state.cancel_reason
        if reason is not None:  # whatever the engine said on its way out, it was stopped
            await self._database.write(
                lambda connection: runs.cancel_run(
                    connection, run.id, reason, worker_id=self.id, backend=backend, logs=state.logs
                )
            )
            logger.info("run canceled", extra={"run_id": run.id})
            return
        await self._database.write(
            lambda connection: runs.fail_run(
                connection, run.id, failure, worker_id=self.id, backend=backend, logs=state.logs
            )
        )
        logger.info("run failed: %s", outcome.code, extra={"run_id": run.id})

    async def _give_up(self, run: Run, state: _RunState, lost: EngineLost) -> None:
        """The engine's host vanished: end the lease now, so that the reaper's policy for
        lost workers applies at once (retry while attempts are left, then `worker_lost`)."""
        logger.warning("engine lost on run %s: %s", run.id, lost, extra={"run_id": run.id})
        update_ = runs.ProgressUpdate(None, (*state.logs, f"engine lost: {lost}"))
        await self._database.write(
            lambda connection: runs.heartbeat_run(
                connection, run.id, worker_id=self.id, lease_ms=0, update_=update_
            )
        )

    async def _heartbeat(self, run: Run, state: _RunState) -> None:
        interval = min(1.0, self._settings.lease_seconds / 3)
        run_id = run.id
        while True:
            await asyncio.sleep(interval)
            # Progress is written (and becomes an event) only when it moved.
            fraction = state.fraction if state.fraction != state.sent_fraction else None
            state.sent_fraction = state.fraction
            update_ = runs.ProgressUpdate(fraction, tuple(state.logs))
            write = asyncio.ensure_future(
                self._database.write(
                    lambda connection, update_=update_: runs.heartbeat_run(  # type: ignore[misc]
                        connection,
                        run_id,
                        worker_id=self.id,
                        lease_ms=self._lease_ms,
                        update_=update_,
                    )
                )
            )
            try:
                lease = await asyncio.shield(write)
            except asyncio.CancelledError:
                # The run ended: the write goes on in the writer's thread regardless. See it
                # through, so that the run's last write does not carry its lines again.
                with contextlib.suppress(Exception):
                    await write
                    del state.logs[: len(update_.new_logs)]
                raise
            except Exception:  # one failed heartbeat is not fatal: the lease outlasts it
                logger.exception("heartbeat of run %s failed; retrying", run_id)
                state.sent_fraction = None  # send the progress again
                continue
            del state.logs[: len(update_.new_logs)]
            if lease is runs.Lease.LOST:
                state.is_lost = True
                return
            if lease is runs.Lease.CANCELING and state.cancel_reason is None:
                state.cancel_reason = (
                    "the run passed its Cancel-After deadline"
                    if _past_deadline(run)
                    else "the run was canceled by its owner"
                )
            if fraction is not None:
                self._observer.run_changed(run_id)

    async def _release_current(self) -> None:
        """Shutting down mid-run: hand the run back without using up one of its attempts."""
        run_id = self._current
        if run_id is None:
            return
        await self._database.write(
            lambda connection: runs.hand_back_run(connection, run_id, worker_id=self.id)
        )


def _engine_problem(exc: Exception) -> str:
    return str(getattr(exc, "message", None) or type(exc).__name__)


def _past_deadline(run: Run) -> bool:
    return run.deadline_ms is not None and now_ms() >= run.deadline_ms


def _record(state: _RunState, event: ChildEvent) -> None:
    if isinstance(event, Log):
        state.logs.append(event.message)
    else:
        state.fraction = event.fraction
