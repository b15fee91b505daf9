"""Waiting on a run from a request: `Prefer: wait`, cancel and the SSE stream.

A waiter wakes when this process's workers report a change (`RunSignals`) and, as a
fallback for workers in other processes, re-reads the run every half second.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Final

from runbase.core import listing, runs
from runbase.core.run_view import Run
from runbase.http.deps import Services

POLL_SECONDS: Final = 0.5


async def wait_for_run(
    services: Services,
    run_id: str,
    *,
    owner: listing.Owner,
    timeout: float,
    until: Callable[[Run], bool] = lambda run: runs.RunStatus(run.status).is_terminal(),
) -> Run:
    """The run once `until(run)` holds, or as it stands when `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    while True:
        run = await services.database.read(
            lambda connection: listing.get_run(connection, run_id, owner=owner)
        )
        left = deadline - time.monotonic()
        if until(run) or left <= 0:
            return run
        await services.signals.wait(run_id, min(POLL_SECONDS, left))


async def cancel_and_wait(services: Services, run_id: str, *, owner: listing.Owner) -> Run:
    """Cancel a run and answer it as it then stands: a pending run is canceled at once; a
    processing one's engine is asked to stop, and this waits up to the settings'
    `cancel_wait_seconds` for it (still `processing` after that: the request stays in
    place, and the run is canceled and refunded when the engine stops)."""
    answer = await services.database.write(
        lambda connection: runs.request_cancel(connection, run_id, owner=owner)
    )
    services.signals.notify(run_id)
    wait = services.settings.cancel_wait_seconds if answer is runs.CancelAnswer.REQUESTED else 0
    return await wait_for_run(services, run_id, owner=owner, timeout=wait)
