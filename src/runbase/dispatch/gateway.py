"""The provider gateway: many runs at once at providers, in this process's event loop.

    Gateway.run_forever     start the providers; claim as many live runs as there are free
                            slots (woken at once by `WorkSignal`, polling as the fallback);
                            one task per run (`dispatch.provider_run`)
    Gateway._heartbeat      one statement renews the lease of every run it holds, then
                            progress and logs are written for the runs that have news; a
                            run whose owner asked to cancel it, whose Cancel-After passed,
                            or that was taken away (reaped) is told at once
    Gateway.wake_task       a provider's callback (a hint): the run polls at once

Per provider: a cap on runs in flight (`Provider.max_in_flight`), a circuit breaker
(`dispatch.routing.Breaker`), and counters for /metrics. Runs of test keys never go to a
provider: compute workers claim them. A run whose route ends at the compute station is
handed to an idle compute worker of this process (`transfer_run`).

On shutdown the runs' tasks stop between polls and the runs go back to the queue without
losing an attempt; their upstream tasks go on, and whoever claims them next resumes them
(their task ids are in `upstream_attempts`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

from sqlalchemy import Connection

from runbase.config import Settings
from runbase.core import attempts, claims, runs
from runbase.core.clock import new_id, now_ms
from runbase.core.run_view import Run
from runbase.dispatch.held_runs import GatewayObserver, HeldRun, Slots
from runbase.dispatch.provider_run import ProviderRun
from runbase.dispatch.routing import Breaker, BreakerState, Route
from runbase.dispatch.wakeup import WorkSignal
from runbase.providers import Provider
from runbase.providers.download import VideoDownloads
from runbase.storage.blobs import BlobStore
from runbase.storage.db import Database

logger = logging.getLogger(__name__)

_CLAIM_BATCH = 64


class Gateway:
    def __init__(
        self,
        *,
        database: Database,
        blobs: BlobStore,
        settings: Settings,
        route: Route,
        providers: dict[str, Provider],
        work: WorkSignal,
        observer: GatewayObserver,
        compute_usable: Callable[[], bool | None],
        hand_to_compute: Callable[[HeldRun], Awaitable[bool]] | None = None,
        callback_url: Callable[[str, str], str | None] = lambda provider, run_id: None,
    ) -> None:
        self.id = new_id("gw")
        self.database = database
        self.blobs = blobs
        self.settings = settings
        self.route = route
        self.providers = providers
        self.observer = observer
        self.slots = Slots({name: p.max_in_flight for name, p in providers.items()})
        self.breakers = {
            name: Breaker(settings.breaker_failures, settings.breaker_cooldown_seconds)
            for name in providers
        }
        self.started: dict[str, str | None] = {}
        """Each provider's start-up problem (None: started)."""
        self.held: dict[str, HeldRun] = {}
        self.stopping = asyncio.Event()
        self._work = work
        self._compute_usable = compute_usable
        self.hand_to_compute = hand_to_compute
        self.callback_url = callback_url
        self.downloads = VideoDownloads()
        self._tasks: set[asyncio.Task[None]] = set()
        self._heartbeat_written = asyncio.Event()
        self._heartbeat_written.set()

    # ---- what the route looks like now ---------------------------------------------------

    def stations(self) -> tuple[str | None, ...]:
        """Provider names in route order, None for the compute station."""
        return self.route.stations(compute_usable=self._compute_usable())

    def usable(self, name: str) -> bool:
        """Started, and its breaker lets a new run through."""
        return self.started.get(name, "not started") is None and self.breakers[name].allows()

    def capacity(self) -> int:
        """How many more live runs this gateway can start now."""
        total = 0
        for station in self.stations():
            if station is None:
                total += 1 if self.hand_to_compute is not None else 0
            elif self.usable(station):
                free = self.slots.free(station)
                half_open = self.breakers[station].state is BreakerState.HALF_OPEN
                total += min(free, 1) if half_open else free
        return total

    def claims_fresh_runs(self) -> bool:
        """Whether live runs start here (the route's first station is a provider)."""
        stations = self.stations()
        return bool(stations) and stations[0] is not None

    def in_flight(self) -> dict[str, int]:
        return dict(self.slots.in_flight)

    def breaker_states(self) -> dict[str, BreakerState]:
        return {name: breaker.state for name, breaker in self.breakers.items()}

    # ---- the loops -----------------------------------------------------------------------

    async def start_providers(self) -> None:
        for name, provider in self.providers.items():
            try:
                await provider.start()
                self.started[name] = None
            except Exception as exc:
                logger.exception("provider %s could not start", name)
                self.started[name] = getattr(exc, "message", None) or type(exc).__name__

    async def run_forever(self, stopping: asyncio.Event) -> None:
        """Claim and carry runs until `stopping` is set; then hand them back."""
        self.stopping = stopping
        await self.start_providers()
        heartbeat = asyncio.create_task(self._heartbeat_forever())
        failures = 0
        try:
            while not stopping.is_set():
                try:
                    again = await self._claim()
                    failures = 0
                except Exception:
                    failures += 1
                    logger.exception("claiming runs failed; retrying")
                    await _sleep_unless(stopping, min(30.0, 0.5 * 2**failures))
                    continue
                if not again:
                    await self._work.wait(self.settings.poll_interval_seconds)
        finally:
            for held in self.held.values():
                held.wake.set()
            await self._stop_tasks()
            heartbeat.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await heartbeat
            await asyncio.shield(self._hand_back_all())
            for provider in self.providers.values():
                with contextlib.suppress(Exception):
                    await provider.close()
            await self.downloads.aclose()

    async def _claim(self) -> bool:
        """Claim as many runs as there is room for; True when it should look again at once
        (it claimed some, or every slot was taken and one may have come free since)."""
        if not self.claims_fresh_runs():
            return False
        room = min(self.capacity(), _CLAIM_BATCH)
        if room <= 0:
            await self.slots.changed(self.settings.poll_interval_seconds)
            return True
        lease_ms = int(self.settings.lease_seconds * 1000)
        claimed = await self.database.write(
            lambda connection: _claim_with_attempts(
                connection, self.id, lease_ms, room, not self.database.is_sqlite
            )
        )
        for run, history in claimed:
            self._start(run, history)
        return bool(claimed)

    def _start(self, run: Run, history: list[attempts.Attempt]) -> None:
        held = HeldRun(run)
        self.held[held.id] = held
        self.observer.run_changed(held.id)
        task = asyncio.create_task(ProviderRun(self, held, history).execute())
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._finished(held, done))

    def _finished(self, held: HeldRun, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error(
                "run %s: its task died",
                held.id,
                exc_info=task.exception(),
                extra={"run_id": held.id},
            )
        if not self.stopping.is_set():  # at shutdown, _hand_back_all still needs it
            self.held.pop(held.id, None)
        self.observer.run_changed(held.id)

    async def _stop_tasks(self) -> None:
        if not self._tasks:
            return
        _, pending = await asyncio.wait(set(self._tasks), timeout=10.0)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.wait(pending, timeout=5.0)

    async def _hand_back_all(self) -> None:
        for run_id in list(self.held):
            try:
                await self.database.write(
                    lambda connection, run_id=run_id: runs.hand_back_run(  # type: ignore[misc]
                        connection, run_id, worker_id=self.id
                    )
                )
            except Exception:
                logger.exception("handing run %s back failed", run_id)
        self.held.clear()

    async def _heartbeat_forever(self) -> None:
        interval = min(1.0, self.settings.lease_seconds / 3)
        while True:
            await asyncio.sleep(interval)
            try:
                await self._heartbeat()
            except asyncio.CancelledError:
                raise
            except Exception:  # one failed heartbeat is not fatal: the lease outlasts it
                logger.exception("heartbeat of the gateway's runs failed; retrying")

    async def _heartbeat(self) -> None:
        if not self.held:
            return
        updates: dict[str, runs.ProgressUpdate] = {}
        for held in self.held.values():
            fraction = held.fraction if held.fraction != held.sent_fraction else None
            if fraction is not None or held.logs:
                updates[held.id] = runs.ProgressUpdate(fraction, tuple(held.logs))
        lease_ms = int(self.settings.lease_seconds * 1000)
        self._heartbeat_written.clear()
        try:
            leases = await self.database.write(
                lambda connection: claims.renew_leases(
                    connection, worker_id=self.id, lease_ms=lease_ms, updates=updates
                )
            )
            for run_id, update_ in updates.items():  # drop what was sent, keep what came since
                sent = self.held.get(run_id)
                if sent is not None:
                    del sent.logs[: len(update_.new_logs)]
                    if update_.fraction is not None:
                        sent.sent_fraction = update_.fraction
        finally:
            self._heartbeat_written.set()
        now = now_ms()
        for held in list(self.held.values()):
            if held.id not in leases.held:
                if not held.is_lost:
                    held.is_lost = True
                    held.wake.set()
                continue
            if held.cancel_reason is None:
                past_deadline = held.run.deadline_ms is not None and now >= held.run.deadline_ms
                if past_deadline:
                    held.cancel_reason = "the run passed its Cancel-After deadline"
                elif held.id in leases.canceling:
                    held.cancel_reason = "the run was canceled by its owner"
                if held.cancel_reason is not None:
                    held.wake.set()
            if held.id in updates and updates[held.id].fraction is not None:
                self.observer.run_changed(held.id)

    async def take_logs(self, held: HeldRun) -> list[str]:
        """The run's log lines not yet written, for its next write of its own. A heartbeat
        writing lines now takes them off once written: wait for it, or they go twice."""
        while not self._heartbeat_written.is_set():
            await self._heartbeat_written.wait()
        logs = list(held.logs)
        held.logs.clear()
        return logs

    # ---- callbacks -------------------------------------------------------------------------

    def wake_task(self, provider: str, run_id: str, task_id: str) -> bool:
        """A callback says the task moved: poll it now. False when the run is not held
        here (or is at another task): the hint is dropped, polling goes on anyway."""
        held = self.held.get(run_id)
        if held is None or held.provider != provider or held.task_id != task_id:
            return False
        held.wake.set()
        return True


def _claim_with_attempts(
    connection: Connection, worker_id: str, lease_ms: int, limit: int, is_postgres: bool
) -> list[tuple[Run, list[attempts.Attempt]]]:
    claimed = claims.claim_runs(
        connection,
        worker_id=worker_id,
        lease_ms=lease_ms,
        is_postgres=is_postgres,
        limit=limit,
        is_test=False,
    )
    history = attempts.attempts_of_runs(connection, [run.id for run in claimed])
    return [(run, history[run.id]) for run in claimed]


async def _sleep_unless(stopping: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stopping.wait(), seconds)
