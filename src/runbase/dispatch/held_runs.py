"""What the provider gateway keeps per run and per provider while runs are in flight.

HeldRun          a run the gateway holds: its logs and progress since the last
                 heartbeat (it is the `RunLog` its provider writes to), why it must
                 stop (canceled, lost), and what wakes its poll loop (`Wake`)
Slots            runs in flight per provider, never above the provider's cap
GatewayObserver  who hears about the gateway's runs (the server's waiters, metrics)
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

from runbase.config import Settings
from runbase.core.run_view import Run
from runbase.dispatch.routing import Breaker
from runbase.dispatch.wakeup import WorkSignal
from runbase.providers import Provider
from runbase.providers.download import VideoDownloads
from runbase.storage.blobs import BlobStore
from runbase.storage.db import Database


class GatewayObserver(Protocol):
    """Who hears about the gateway's runs (the server's waiters and metrics)."""

    def run_changed(self, run_id: str) -> None: ...

    def provider_submitted(self, provider: str, seconds: float) -> None: ...

    def provider_completed(self, provider: str, seconds: float) -> None: ...

    def provider_failed(self, provider: str, error_class: str) -> None: ...


class Wake:
    """What cuts a run's wait between two polls short. A thousand runs in flight sleep
    hundreds of times a second: `asyncio.wait_for` on an `asyncio.Event` costs a task
    and, at every timeout, its cancellation; this costs one future and one timer."""

    def __init__(self) -> None:
        self._waiter: asyncio.Future[None] | None = None

    def set(self) -> None:
        """End the wait in progress, if any (the loop looks at the run's state next)."""
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def sleep(self, seconds: float) -> None:
        """Wait `seconds`, or until `set` is called meanwhile."""
        loop = asyncio.get_running_loop()
        waiter = self._waiter = loop.create_future()
        timer = loop.call_later(seconds, _settle, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None


def _settle(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


@dataclass
class HeldRun:
    """A run this gateway holds, and what its task reported since the last heartbeat."""

    run: Run
    logs: list[str] = field(default_factory=list)
    fraction: float = 0.0
    sent_fraction: float = 0.0
    """Progress as last written (a claim sets it to 0): only a change is written."""
    cancel_reason: str | None = None
    is_lost: bool = False
    wake: Wake = field(default_factory=Wake)
    """Set by a callback, a cancel, a lost lease or shutdown: the poll loop looks at once."""
    provider: str | None = None
    task_id: str | None = None

    @property
    def id(self) -> str:
        return str(self.run.id)

    def log(self, message: str) -> None:
        self.logs.append(message)

    def progress(self, fraction: float, stage: str = "") -> None:
        del stage  # the run shows a fraction; the stage goes to the logs when it matters
        self.fraction = max(0.0, min(1.0, fraction))


class Slots:
    """Runs in flight per provider, never above its cap; waiters wake when one frees."""

    def __init__(self, caps: dict[str, int]) -> None:
        self.caps = caps
        self.in_flight = dict.fromkeys(caps, 0)
        self._changed = WorkSignal()

    def free(self, name: str) -> int:
        return self.caps[name] - self.in_flight[name]

    def try_take(self, name: str) -> bool:
        if self.in_flight[name] >= self.caps[name]:
            return False
        self.in_flight[name] += 1
        return True

    def give(self, name: str) -> None:
        self.in_flight[name] -= 1
        self._changed.notify()

    async def changed(self, timeout: float) -> None:
        await self._changed.wait(timeout)


class RunHost(Protocol):
    """What a run needs from the gateway that carries it (`dispatch.gateway.Gateway`)."""

    id: str
    database: Database
    blobs: BlobStore
    settings: Settings
    providers: dict[str, Provider]
    slots: Slots
    breakers: dict[str, Breaker]
    observer: GatewayObserver
    stopping: asyncio.Event
    hand_to_compute: Callable[[HeldRun], Awaitable[bool]] | None
    callback_url: Callable[[str, str], str | None]
    downloads: VideoDownloads

    def stations(self) -> tuple[str | None, ...]: ...

    async def take_logs(self, held: HeldRun) -> list[str]: ...

    def usable(self, name: str) -> bool: ...
