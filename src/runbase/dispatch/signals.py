"""In-process news of run changes, so that waiting requests wake at once.

`Prefer: wait`, the SSE stream and a cancel all wait for a run to change. The workers and
the reaper of this process call `notify` after each change they write; waiters also poll
the database now and then, which covers workers in other processes (`runbase worker`).
Everything here runs on the event loop's thread.
"""

from __future__ import annotations

import asyncio
import contextlib


class RunSignals:
    def __init__(self) -> None:
        self._waiters: dict[str, set[asyncio.Future[None]]] = {}

    def notify(self, run_id: str) -> None:
        """Wake everyone waiting on this run."""
        for waiter in self._waiters.pop(run_id, ()):
            if not waiter.done():
                waiter.set_result(None)

    async def wait(self, run_id: str, timeout: float) -> bool:
        """Until the run changes (True) or `timeout` seconds pass (False)."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters = self._waiters.setdefault(run_id, set())
        waiters.add(waiter)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(waiter, max(0.0, timeout))
                return True
            return False
        finally:
            waiters.discard(waiter)
            if not waiters and self._waiters.get(run_id) is waiters:
                del self._waiters[run_id]
