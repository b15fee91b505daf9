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

from sqlalchemy import Connection, Table, func, insert, literal, select, update

from runbase.core.usage_sql import ACTIVE, DAY_MS, RunScope, Tally, tally_runs
from runbase.storage.tables import RunRow, UsageDayFailuresRow, UsageDayRow, UsageWatermarkRow

_RUNS = cast(Table, RunRow.__table__)
_DAYS = cast(Table, UsageDayRow.__table__)
_FAILURES = cast(Table, UsageDayFailuresRow.__table__)
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
    failures = [
        {**_dimensions(day_ms, key), "error_code": code, "runs": count}
        for key, tally in tallies.items()
        for code, count in tally.failures.items()
    ]
    if failures:
        connection.execute(insert(_FAILURES), failures)
    return True


def _dimensions(day_ms: int, key: tuple[Any, ...]) -> dict[str, Any]:
    _, account_id, key_id, model, backend, is_test = key
    return {
        "day_ms": day_ms,
        "account_id": account_id,
        "key_id": key_id,
        "model": model,
        "backend": backend,
        "is_test": bool(is_test),
    }


def _day_row(day_ms: int, key: tuple[Any, ...], tally: Tally) -> dict[str, Any]:
    return {
        **_dimensions(day_ms, key),
        "succeeded": tally.statuses["succeeded"],
        "failed": tally.statuses["failed"],
        "canceled": tally.statuses["canceled"],
        "charged_micros": tally.charged,
        "refunded_micros": tally.refunded,
        "upstream_cost_micros": tally.upstream_cost,
        "queue_wait_hist": tally.queue_wait.to_bytes(),
        "generation_hist": tally.generation.to_bytes(),
    }


def rolled_tallies(
    connection: Connection, scope: RunScope, *, origin_ms: int, span_ms: int, group: str | None
) -> dict[tuple[int, str], Tally]:
    """Tallies of the rolled-up days in the scope, keyed by (bucket number, group value):
    counts and money summed by SQL, histograms added up here as arrays."""
    tallies: dict[tuple[int, str], Tally] = {}

    def keys(table: Table) -> list[Any]:
        bucket = (table.c.day_ms - origin_ms) // span_ms
        return [bucket, table.c[group] if group else literal("")]

    def cell(row: Any) -> Tally:
        key = (int(row[0]), str(row[1]))
        found = tallies.get(key)
        if found is None:
            found = tallies[key] = Tally()
        return found

    sums = select(*keys(_DAYS), *_SUMS).where(*_conditions(_DAYS, scope))
    for row in connection.execute(sums.group_by(*keys(_DAYS))):
        _fill_sums(cell(row), row[2:])
    codes = [*keys(_FAILURES), _FAILURES.c.error_code]
    failures = select(*codes, func.sum(_FAILURES.c.runs)).where(*_conditions(_FAILURES, scope))
    for row in connection.execute(failures.group_by(*codes)):
        cell(row).failures[row[2]] += int(row[3])
    stored: dict[tuple[int, str], tuple[list[bytes], list[bytes]]] = {}
    histograms = select(*keys(_DAYS), _DAYS.c.queue_wait_hist, _DAYS.c.generation_hist)
    for row in connection.execute(histograms.where(*_conditions(_DAYS, scope))):
        queue_wait, generation = stored.setdefault((int(row[0]), str(row[1])), ([], []))
        queue_wait.append(row[2])
        generation.append(row[3])
    for key, (queue_wait, generation) in stored.items():
        tallies[key].queue_wait.merge_stored(queue_wait)
        tallies[key].generation.merge_stored(generation)
    return tallies


_SUMS = (
    func.sum(_DAYS.c.succeeded),
    func.sum(_DAYS.c.failed),
    func.sum(_DAYS.c.canceled),
    func.sum(_DAYS.c.charged_micros),
    func.sum(_DAYS.c.refunded_micros),
    func.sum(_DAYS.c.upstream_cost_micros),  # NULL while no row has one
)


def _fill_sums(tally: Tally, sums: Any) -> None:
    succeeded, failed, canceled, charged, refunded, upstream = (
        None if value is None else int(value) for value in sums
    )
    tally.statuses.update(succeeded=succeeded or 0, failed=failed or 0, canceled=canceled or 0)
    tally.charged += charged or 0
    tally.refunded += refunded or 0
    if upstream is not None:
        tally.upstream_cost = (tally.upstream_cost or 0) + upstream


def _conditions(table: Table, scope: RunScope) -> list[Any]:
    """The scope's range and filters, on a rollup table."""
    conditions = [table.c.day_ms >= scope.start_ms, table.c.day_ms < scope.end_ms]
    for name, value in (
        ("account_id", scope.account_id),
        ("key_id", scope.key_id),
        ("model", scope.model),
        ("backend", scope.backend),
    ):
        if value is not None:
            conditions.append(table.c[name] == value)
    if scope.mode != "all":
        conditions.append(table.c.is_test.is_(scope.mode == "test"))
    return conditions
