"""Keeps the usage rollup up to date: each settled day and hour is tallied once, in the
background, so that usage answers read `usage_rollups` instead of every run."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from runbase.core import usage_rollup
from runbase.core.clock import now_ms
from runbase.storage.db import Database

logger = logging.getLogger(__name__)
INTERVAL_SECONDS = 60.0


async def roll_up_settled(database: Database, *, now: int | None = None) -> int:
    """Roll up every settled day and hour not rolled yet; answers how many were."""
    rolled = 0
    for span in ("day", "hour"):
        while await _roll_next(database, span, now if now is not None else now_ms()):
            rolled += 1
    return rolled


async def _roll_next(database: Database, span: usage_rollup.Span, now: int) -> bool:
    start = await database.scan(lambda c: usage_rollup.next_to_roll(c, now, span))
    if start is None:
        return False
    tallies = await database.scan(lambda c: usage_rollup.tally_bucket(c, span, start))
    # False when another server rolled this bucket first: it goes on from there.
    return await database.write(lambda c: usage_rollup.store_bucket(c, span, start, tallies))


async def roll_up_usage_forever(database: Database, stopping: asyncio.Event) -> None:
    while not stopping.is_set():
        try:
            await roll_up_settled(database)
        except Exception:  # the next round tries again; answers read runs meanwhile
            logger.warning("usage rollup failed", exc_info=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), INTERVAL_SECONDS)
