"""Everything that processes runs in one process (`runbase serve`, `runbase worker`).

    Pools.start(stopping)   the reaper, the compute workers (`dispatch.worker`, one engine
                            child each) and the provider gateway (`dispatch.gateway`), each
                            supervised: a task that dies anyway is logged, restarted after
                            a pause, and counted (`runbase_task_restarts_total`)
    Pools.refusal()         why no run can be taken now (nothing of the route can start),
                            or None: creates are refused with 503 before any charge
    Pools.readiness()       what /readyz shows: each provider, the compute station

The route (`dispatch.routing.Route`) decides who claims live runs: the gateway when it
starts with a provider, else the compute workers. Compute workers always claim the runs of
test keys (the test engine), and take the live runs the gateway hands them when a route
ends at the compute station.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Literal, Protocol

from sqlalchemy import Connection

from runbase.config import Settings
from runbase.core import claims, runs
from runbase.dispatch.callbacks import CallbackSigner
from runbase.dispatch.gateway import Gateway
from runbase.dispatch.held_runs import GatewayObserver, HeldRun
from runbase.dispatch.reaping import reap_forever
from runbase.dispatch.routing import Route, check_engines, describe_problems
from runbase.dispatch.wakeup import WorkListener, WorkSignal
from runbase.dispatch.worker import ComputeStation, Worker, WorkerObserver
from runbase.errors import EngineUnavailable, InvalidInput
from runbase.providers import InputUnsupported, Provider, load_provider
from runbase.storage.blobs import BlobStore
from runbase.storage.db import Database
from runbase.storage.local_blobs import load_or_create_secret

logger = logging.getLogger(__name__)


class PoolsObserver(WorkerObserver, GatewayObserver, Protocol):
    def task_restarted(self, task: str) -> None:
        """A supervised task died and was started again."""


class QuietObserver:
    """For a process without an HTTP server: nobody waits on runs, no metrics."""

    def run_changed(self, run_id: str) -> None:
        pass

    def engine_used(self, model: str, backend: str | None, seconds: float) -> None:
        pass

    def provider_submitted(self, provider: str, seconds: float) -> None:
        pass

    def provider_completed(self, provider: str, seconds: float) -> None:
        pass

    def provider_failed(self, provider: str, error_class: str) -> None:
        pass

    def task_restarted(self, task: str) -> None:
        logger.warning("task %s was restarted", task)


class Pools:
    def __init__(
        self,
        *,
        database: Database,
        blobs: BlobStore,
        settings: Settings,
        work: WorkSignal,
        observer: PoolsObserver,
        worker_count: int,
    ) -> None:
        problems = check_engines(settings)
        if settings.engines and all(problems.values()):
            raise EngineUnavailable(
                "no engine of RUNBASE_ENGINES can start: " + describe_problems(problems)
            )
        self.settings = settings
        self.database = database
        self.work = work
        self.observer = observer
        self.station = ComputeStation()
        providers: dict[str, Provider] = {}
        names: dict[str, str] = {}
        references = Route.parse(settings.engines)
        for reference in references.all_providers():
            provider = load_provider(reference, settings)
            providers[provider.name] = provider
            names[reference] = provider.name
        self.route = Route(
            tuple(names[r] for r in references.providers),
            references.compute,
            tuple(names[r] for r in references.fallback),
        )
        # The engine child sees only the compute engines of the list (providers live here).
        compute_settings = settings.model_copy(update={"engines": list(self.route.compute)})
        self.workers = [
            Worker(
                database=database,
                blobs=blobs,
                settings=compute_settings,
                observer=observer,
                work=work,
                station=self.station,
                claim_filter=self._compute_claims,
            )
            for _ in range(worker_count)
        ]
        if self.route.needs_compute_probe and self.workers:
            self.workers[0].probe_at_start = True
        signer = CallbackSigner(
            load_or_create_secret(settings.data_dir / "url-signing.key"), settings.public_url
        )
        self.signer = signer
        self.gateway = (
            Gateway(
                database=database,
                blobs=blobs,
                settings=settings,
                route=self.route,
                providers=providers,
                work=work,
                observer=observer,
                compute_usable=self._compute_usable,
                hand_to_compute=self._hand_to_compute if self.route.compute else None,
                callback_url=signer.url,
            )
            if providers
            else None
        )
        self.restarts: dict[str, int] = {}
        self.tasks: dict[str, asyncio.Task[None]] = {}
        self._stopping = asyncio.Event()
        self._listener: WorkListener | None = None
        self._probe: asyncio.Task[None] | None = None

    # ---- running -----------------------------------------------------------------------

    def start(self, stopping: asyncio.Event) -> list[asyncio.Task[None]]:
        """Start every loop, supervised; they end once `stopping` is set."""
        self._stopping = stopping
        if not self.database.is_sqlite:
            self._listener = WorkListener(self.database.url, self.work, asyncio.get_running_loop())
            self._listener.start()
        loops: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            (
                "reaper",
                lambda: reap_forever(
                    self.database, self.settings, stopping, self.observer, self.work
                ),
            )
        ]
        for index, worker in enumerate(self.workers):
            loops.append((f"worker-{index}", lambda w=worker: w.run_forever(stopping)))  # type: ignore[misc]
        if self.gateway is not None:
            loops.append(("gateway", lambda: self.gateway.run_forever(stopping)))  # type: ignore[union-attr]
        self.tasks = {
            name: asyncio.create_task(self._supervise(name, loop)) for name, loop in loops
        }
        return list(self.tasks.values())

    def running_workers(self) -> int:
        """Compute workers whose loop is running."""
        return sum(
            1 for name, task in self.tasks.items() if name.startswith("worker-") and not task.done()
        )

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()

    async def _supervise(self, name: str, loop: Callable[[], Awaitable[None]]) -> None:
        pause = 1.0
        while True:
            try:
                await loop()
                return
            except asyncio.CancelledError:
                raise
            except Exception:
                if self._stopping.is_set():
                    logger.exception("%s failed while stopping", name)
                    return
                logger.exception("%s died; restarting it in %.0f s", name, pause)
                self.restarts[name] = self.restarts.get(name, 0) + 1
                self.observer.task_restarted(name)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), pause)
                if self._stopping.is_set():
                    return
                pause = min(pause * 2, 30.0)

    # ---- who takes which runs ------------------------------------------------------------

    def _compute_usable(self) -> bool | None:
        return self.station.usable()

    def _compute_claims(self) -> bool | Literal["none"] | None:
        """None: any run; True: only test runs; "none": only runs handed over."""
        if self.route.needs_compute_probe and not self.station.is_known:
            return "none"  # the route hangs on whether the compute engine starts
        stations = self.gateway.stations() if self.gateway is not None else (None,)
        if stations and stations[0] is not None:
            return True
        return None

    async def _hand_to_compute(self, held: HeldRun) -> bool:
        """Give a held run to the first idle compute worker (waiting for one)."""
        assert self.gateway is not None
        while not self._stopping.is_set() and not held.is_lost:
            worker = next((w for w in self.workers if w.is_idle), None)
            if worker is None:
                await self.work.wait(0.5)
                continue
            moved = await self._transfer(held, self.gateway.id, worker.id)
            if moved:
                worker.take_over(held.run)
            return bool(moved)
        return False

    async def _transfer(self, held: HeldRun, gateway_id: str, worker_id: str) -> bool:
        """Move the run to the worker, with what the gateway logged for it (its path)."""
        lease_ms = int(self.settings.lease_seconds * 1000)
        logs = tuple(held.logs)
        held.logs.clear()

        def transfer(connection: Connection) -> bool:
            if logs:
                update_ = runs.ProgressUpdate(None, logs)
                runs.heartbeat_run(
                    connection, held.id, worker_id=gateway_id, lease_ms=lease_ms, update_=update_
                )
            return claims.transfer_run(
                connection, held.id, from_worker=gateway_id, to_worker=worker_id, lease_ms=lease_ms
            )

        return await self.database.write(transfer)

    def probe_compute(self) -> None:
        """Start the compute engine in the background, once, if nobody has yet: /readyz
        calls this, so that a load balancer's first check learns whether it starts."""
        if (
            self._probe is None
            and self.route.compute
            and self.workers
            and not self.station.is_known
        ):
            self._probe = asyncio.create_task(self.workers[0].probe_engine())

    def check_input(self, model: str, validated_input: Mapping[str, Any]) -> None:
        """At creation: refuse (`InvalidInput`, nothing charged) an input that no station
        of the route can honour. A compute station honours every input of the catalog."""
        if self.gateway is None:
            return
        stations = self.gateway.stations()
        reasons = []
        for station in stations:
            if station is None:
                return
            try:
                self.gateway.providers[station].check_input(model, validated_input)
                return
            except InputUnsupported as refusal:
                reasons.append(refusal.message)
        if reasons:
            raise InvalidInput(
                "no provider of this server can make this video: " + "; ".join(reasons)
            )

    # ---- health ------------------------------------------------------------------------

    def refusal(self) -> str | None:
        """Why no run can be taken now, or None. Nothing is refused while a station may
        still work (a provider's breaker is a pause, not a refusal)."""
        reasons = []
        stations = self.gateway.stations() if self.gateway else (None,)
        if not self.route.compute and not self.route.providers and not self.route.fallback:
            return "no engine is configured (RUNBASE_ENGINES is empty)"
        for station in stations:
            if station is None:
                if self.station.problem is None:
                    return None
                reasons.append(self.station.problem)
                continue
            assert self.gateway is not None
            problem = self.gateway.started.get(station)
            if problem is None:
                return None
            reasons.append(f"{station}: {problem}")
        return "no engine can take runs: " + "; ".join(reasons)

    def readiness(self) -> dict[str, Any]:
        found: dict[str, Any] = {}
        if self.route.compute:
            found["compute"] = {
                "engines": list(self.route.compute),
                "usable": self.station.problem is None,
                **({"problem": self.station.problem} if self.station.problem else {}),
            }
        if self.gateway is not None:
            states = self.gateway.breaker_states()
            in_flight = self.gateway.in_flight()
            found["providers"] = {
                name: {
                    "usable": self.gateway.usable(name),
                    "breaker": states[name].value,
                    "in_flight": in_flight[name],
                    "max_in_flight": self.gateway.slots.caps[name],
                    **({"problem": p} if (p := self.gateway.started.get(name)) else {}),
                }
                for name in self.gateway.providers
            }
        if self.restarts:
            found["restarts"] = dict(self.restarts)
        return found
