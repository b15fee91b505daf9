"""Keeps the daily usage rollup up to date: each settled day is tallied once, in the
background, so that usage answers read days from `usage_days` instead of every run."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from runbase.core import usage_rollup
from runbase.core.clock import now_ms
from runbase.storage.db import Database

logger = logging.getLogger(__name__)
INTERVAL_SECONDS = 60.0


async def roll_up_settled_days(database: Database, *, now: int | None = None) -> int:
    """Roll up every settled day not rolled yet; answers how many were."""
    rolled = 0
    while await _roll_next_day(database, now if now is not None else now_ms()):
        rolled += 1
    return rolled


async def _roll_next_day(database: Database, now: int) -> bool:
    day = await database.report(lambda c: usage_rollup.next_day_to_roll(c, now))
    if day is None:
        return False
    tallies = await database.report(lambda c: usage_rollup.tally_day(c, day))
    # False when another server rolled this day first: it goes on from there.
    return await database.write(lambda c: usage_rollup.store_day(c, day, tallies))


async def roll_up_usage_forever(database: Database, stopping: asyncio.Event) -> None:
    while not stopping.is_set():
        try:
            await roll_up_settled_days(database)
        except Exception:  # the next round tries again; answers read runs meanwhile
            logger.warning("usage rollup failed", exc_info=True)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), INTERVAL_SECONDS)
