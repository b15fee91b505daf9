"""The usage rollup: settled hours and days tallied once into `usage_rollups`.

A bucket (a UTC hour or day) is settled when every run created in it has finished:
finished runs never change again (their status, cost and refund are final), so its
tallies are final too. The first bucket that may still change is the one of the oldest
unfinished run, or of five minutes ago (a create's timestamp is taken a moment before its
commit; the margin covers that and small clock differences between servers). Each span
has a watermark in `usage_watermarks`: buckets before it are in `usage_rollups`, later
ones are read from `runs`. Both spans start at the oldest run, so rolled hours cover
everything before their watermark too.

Rolling a bucket is a read (tally its runs, off the write path) and a short write that
inserts its rows and moves the watermark from that bucket to the next with a guarded
update: when two servers roll the same bucket, one write moves it and the other changes
nothing. A stuck unfinished run holds the watermarks back; usage answers stay exact,
reading more runs directly until it finishes.
"""

from __future__ import annotations

from typing import Any, Literal, cast

from sqlalchemy import Connection, Table, func, insert, literal, select, update

from runbase.core.usage_sql import ACTIVE, DAY_MS, HOUR_MS, RunScope, Tally, tally_runs
from runbase.storage.tables import (
    RunRow,
    UsageFailuresRow,
    UsageRollupRow,
    UsageWatermarkRow,
)

_RUNS = cast(Table, RunRow.__table__)
_ROLLUPS = cast(Table, UsageRollupRow.__table__)
_FAILURES = cast(Table, UsageFailuresRow.__table__)
_WATERMARKS = cast(Table, UsageWatermarkRow.__table__)
SETTLE_MS = 5 * 60 * 1000
DIMENSIONS = ("account_id", "key_id", "model", "backend", "is_test")
"""A rollup row's key (with its bucket): every filter and grouping of the usage answer."""
Span = Literal["hour", "day"]
SPANS: dict[str, int] = {"hour": HOUR_MS, "day": DAY_MS}


def floor_to(span: Span, ms: int) -> int:
    return ms - ms % SPANS[span]


def read_watermark(connection: Connection, span: Span) -> int | None:
    """Buckets of `span` before this instant are rolled up; None before the first."""
    value = connection.execute(
        select(_WATERMARKS.c.rolled_until_ms).where(_WATERMARKS.c.span == span)
    ).scalar()
    return None if value is None else int(value)


def settled_until(connection: Connection, now_ms: int, span: Span) -> int:
    """The start of the first bucket of `span` that may still change."""
    oldest_active = connection.execute(
        select(func.min(_RUNS.c.created_ms)).where(_RUNS.c.status.in_(ACTIVE))
    ).scalar()
    limit = now_ms - SETTLE_MS
    if oldest_active is not None:
        limit = min(limit, int(oldest_active))
    return floor_to(span, limit)


def next_to_roll(connection: Connection, now_ms: int, span: Span) -> int | None:
    """The start of the next bucket of `span` to roll up, or None when all settled are."""
    start = read_watermark(connection, span)
    if start is None:
        oldest = connection.execute(select(func.min(_RUNS.c.created_ms))).scalar()
        if oldest is None:
            return None
        start = floor_to(span, int(oldest))
    return start if start + SPANS[span] <= settled_until(connection, now_ms, span) else None


def tally_bucket(connection: Connection, span: Span, start_ms: int) -> dict[tuple[Any, ...], Tally]:
    """The bucket's tallies by every dimension (test runs included, marked)."""
    width = SPANS[span]
    scope = RunScope(start_ms, start_ms + width, mode="all")
    return tally_runs(connection, scope, origin_ms=start_ms, span_ms=width, group_by=DIMENSIONS)


def store_bucket(
    connection: Connection, span: Span, start_ms: int, tallies: dict[tuple[Any, ...], Tally]
) -> bool:
    """Insert a rolled bucket and move its watermark past it; False (and nothing written)
    when another server rolled it first."""
    end = start_ms + SPANS[span]
    watermark = read_watermark(connection, span)
    if watermark is None:  # a concurrent first insert fails on the primary key
        connection.execute(insert(_WATERMARKS).values(span=span, rolled_until_ms=end))
    else:
        moved = connection.execute(
            update(_WATERMARKS)
            .where(_WATERMARKS.c.span == span, _WATERMARKS.c.rolled_until_ms == start_ms)
            .values(rolled_until_ms=end)
        ).rowcount
        if not moved:
            return False
    rows = [_rollup_row(span, start_ms, key, tally) for key, tally in tallies.items()]
    if rows:
        connection.execute(insert(_ROLLUPS), rows)
    failures = [
        {**_dimensions(span, start_ms, key), "error_code": code, "runs": count}
        for key, tally in tallies.items()
        for code, count in tally.failures.items()
    ]
    if failures:
        connection.execute(insert(_FAILURES), failures)
    return True


def _dimensions(span: Span, start_ms: int, key: tuple[Any, ...]) -> dict[str, Any]:
    _, account_id, key_id, model, backend, is_test = key
    return {
        "span": span,
        "bucket_ms": start_ms,
        "account_id": account_id,
        "key_id": key_id,
        "model": model,
        "backend": backend,
        "is_test": bool(is_test),
    }


def _rollup_row(span: Span, start_ms: int, key: tuple[Any, ...], tally: Tally) -> dict[str, Any]:
    return {
        **_dimensions(span, start_ms, key),
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
    connection: Connection,
    span: Span,
    scope: RunScope,
    *,
    origin_ms: int,
    bucket_ms: int,
    group: str | None,
) -> dict[tuple[int, str], Tally]:
    """Tallies of the rolled-up buckets of `span` in the scope, keyed by (answer bucket
    number, group value), answer buckets being `bucket_ms` wide from `origin_ms`: counts
    and money summed by SQL, histograms added up here as arrays."""
    tallies: dict[tuple[int, str], Tally] = {}

    def keys(table: Table) -> list[Any]:
        # Each built once and used in both SELECT and GROUP BY: PostgreSQL matches them by
        # their SQL, bind parameters included.
        bucket = ((table.c.bucket_ms - origin_ms) // bucket_ms).label("bucket")
        return [bucket, (table.c[group] if group else literal("")).label("grp")]

    def cell(row: Any) -> Tally:
        key = (int(row[0]), str(row[1]))
        found = tallies.get(key)
        if found is None:
            found = tallies[key] = Tally()
        return found

    rollup_keys = keys(_ROLLUPS)
    sums = select(*rollup_keys, *_SUMS).where(*_conditions(_ROLLUPS, span, scope))
    for row in connection.execute(sums.group_by(*rollup_keys)):
        _fill_sums(cell(row), row[2:])
    codes = [*keys(_FAILURES), _FAILURES.c.error_code]
    failures = select(*codes, func.sum(_FAILURES.c.runs))
    for row in connection.execute(
        failures.where(*_conditions(_FAILURES, span, scope)).group_by(*codes)
    ):
        cell(row).failures[row[2]] += int(row[3])
    stored: dict[tuple[int, str], tuple[list[bytes], list[bytes]]] = {}
    histograms = select(*rollup_keys, _ROLLUPS.c.queue_wait_hist, _ROLLUPS.c.generation_hist)
    for row in connection.execute(histograms.where(*_conditions(_ROLLUPS, span, scope))):
        queue_wait, generation = stored.setdefault((int(row[0]), str(row[1])), ([], []))
        queue_wait.append(row[2])
        generation.append(row[3])
    for key, (queue_wait, generation) in stored.items():
        tallies[key].queue_wait.merge_stored(queue_wait)
        tallies[key].generation.merge_stored(generation)
    return tallies


_SUMS = (
    func.sum(_ROLLUPS.c.succeeded),
    func.sum(_ROLLUPS.c.failed),
    func.sum(_ROLLUPS.c.canceled),
    func.sum(_ROLLUPS.c.charged_micros),
    func.sum(_ROLLUPS.c.refunded_micros),
    func.sum(_ROLLUPS.c.upstream_cost_micros),  # NULL while no row has one
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


def _conditions(table: Table, span: Span, scope: RunScope) -> list[Any]:
    """The scope's range and filters, on a rollup table."""
    conditions = [
        table.c.span == span,
        table.c.bucket_ms >= scope.start_ms,
        table.c.bucket_ms < scope.end_ms,
    ]
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
