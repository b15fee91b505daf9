"""The daily usage rollup: settled days tallied once into `usage_days`.

A day is settled when every run created in it has finished: finished runs never change
again (their status, cost and refund are final), so the day's tallies are final too. The
first day that may still change is the day of the oldest unfinished run, or of five
minutes ago (a create's timestamp is taken a moment before its commit; the margin covers
that and small clock differences between servers). `usage_watermark` says how far the
rollup has come; days before it are read from `usage_days`, later ones from `runs`.

Rolling a day is a read (tally its runs, off the write path) and a short write that
inserts its rows and moves the watermark from that day to the next with a guarded
update: when two servers roll the same day, one write moves it and the other changes
nothing. A stuck unfinished run holds the watermark back; the usage answer stays exact,
reading more runs directly until the run finishes.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import Connection, Table, func, insert, select, update

from runbase.core.usage_sql import ACTIVE, DAY_MS, RunScope, Tally, tally_runs
from runbase.storage.tables import RunRow, UsageDayRow, UsageWatermarkRow

_RUNS = cast(Table, RunRow.__table__)
_DAYS = cast(Table, UsageDayRow.__table__)
_WATERMARK = cast(Table, UsageWatermarkRow.__table__)
SETTLE_MS = 5 * 60 * 1000
DIMENSIONS = ("account_id", "key_id", "model", "backend", "is_test")
"""A rollup row's key (with its day): every filter and grouping of the usage answer."""


def floor_day(ms: int) -> int:
    return ms - ms % DAY_MS


def read_watermark(connection: Connection) -> int | None:
    """Days before this instant are in `usage_days`; None before the first rollup."""
    value = connection.execute(select(_WATERMARK.c.rolled_until_ms)).scalar()
    return None if value is None else int(value)


def settled_until(connection: Connection, now_ms: int) -> int:
    """The start of the first day that may still change."""
    oldest_active = connection.execute(
        select(func.min(_RUNS.c.created_ms)).where(_RUNS.c.status.in_(ACTIVE))
    ).scalar()
    limit = now_ms - SETTLE_MS
    if oldest_active is not None:
        limit = min(limit, int(oldest_active))
    return floor_day(limit)


def next_day_to_roll(connection: Connection, now_ms: int) -> int | None:
    """The start of the next day to roll up, or None when every settled day is."""
    start = read_watermark(connection)
    if start is None:
        oldest = connection.execute(select(func.min(_RUNS.c.created_ms))).scalar()
        if oldest is None:
            return None
        start = floor_day(int(oldest))
    return start if start + DAY_MS <= settled_until(connection, now_ms) else None


def tally_day(connection: Connection, day_ms: int) -> dict[tuple[Any, ...], Tally]:
    """The day's tallies by every dimension (test runs included, marked)."""
    scope = RunScope(day_ms, day_ms + DAY_MS, mode="all")
    return tally_runs(connection, scope, origin_ms=day_ms, span_ms=DAY_MS, group_by=DIMENSIONS)


def store_day(connection: Connection, day_ms: int, tallies: dict[tuple[Any, ...], Tally]) -> bool:
    """Insert a rolled day and move the watermark past it; False (and nothing written) when
    another server rolled it first."""
    watermark = read_watermark(connection)
    if watermark is None:
        connection.execute(insert(_WATERMARK).values(id=1, rolled_until_ms=day_ms + DAY_MS))
    else:
        moved = connection.execute(
            update(_WATERMARK)
            .where(_WATERMARK.c.id == 1, _WATERMARK.c.rolled_until_ms == day_ms)
            .values(rolled_until_ms=day_ms + DAY_MS)
        ).rowcount
        if not moved:
            return False
    rows = [_day_row(day_ms, key, tally) for key, tally in tallies.items()]
    if rows:
        connection.execute(insert(_DAYS), rows)
    return True


def _day_row(day_ms: int, key: tuple[Any, ...], tally: Tally) -> dict[str, Any]:
    _, account_id, key_id, model, backend, is_test = key
    return {
        "day_ms": day_ms,
        "account_id": account_id,
        "key_id": key_id,
        "model": model,
        "backend": backend,
        "is_test": bool(is_test),
        "succeeded": tally.statuses["succeeded"],
        "failed": tally.statuses["failed"],
        "canceled": tally.statuses["canceled"],
        "charged_micros": tally.charged,
        "refunded_micros": tally.refunded,
        "upstream_cost_micros": tally.upstream_cost,
        "failures": dict(tally.failures),
        "queue_wait_hist": {str(index): n for index, n in tally.queue_wait.items()},
        "generation_hist": {str(index): n for index, n in tally.generation.items()},
    }


def day_tally(row: Any) -> Tally:
    """A `usage_days` row as a tally."""
    tally = Tally(charged=row.charged_micros, refunded=row.refunded_micros)
    tally.statuses.update(succeeded=row.succeeded, failed=row.failed, canceled=row.canceled)
    tally.upstream_cost = row.upstream_cost_micros
    tally.failures.update(row.failures)
    tally.queue_wait.update({int(index): n for index, n in row.queue_wait_hist.items()})
    tally.generation.update({int(index): n for index, n in row.generation_hist.items()})
    return tally


def rolled_days(connection: Connection, scope: RunScope) -> list[Any]:
    """`usage_days` rows of the days in the scope's range that pass its filters."""
    days = _DAYS.c
    conditions = [days.day_ms >= scope.start_ms, days.day_ms < scope.end_ms]
    for column, value in (
        (days.account_id, scope.account_id),
        (days.key_id, scope.key_id),
        (days.model, scope.model),
        (days.backend, scope.backend),
    ):
        if value is not None:
            conditions.append(column == value)
    if scope.mode != "all":
        conditions.append(days.is_test.is_(scope.mode == "test"))
    return list(connection.execute(select(_DAYS).where(*conditions)).all())
