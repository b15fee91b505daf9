"""The usage answer: runs, money, failures and times per bucket and group.

Per account, key, model or backend (engine or provider), by hour or day over a range, for
live runs, test runs or both: runs by status, charged, refunded and net micro-USD, failed
runs by error code, queue wait (created -> started) and generation time (started ->
completed, succeeded runs) percentiles, and upstream cost and margin where the gateway
records them (`usage_sql.upstream_cost_per_run`).

Answers read settled days and hours from the rollup (`core.usage_rollup`) and only the
rest, the last hour or so, from `runs` (an index range scan by creation time). Runs belong
to the bucket of their creation. Buckets are whole UTC hours or days.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal, cast

from sqlalchemy import Connection, Table, select

from runbase.core.clock import format_timestamp
from runbase.core.usage_rollup import read_watermark, rolled_tallies
from runbase.core.usage_sql import (
    DAY_MS,
    GROUPS,
    HOUR_MS,
    STATUSES,
    Histogram,
    RunScope,
    Tally,
    tally_runs,
)
from runbase.storage.tables import AccountRow, ApiKeyRow

Bucket = Literal["hour", "day"]
SPANS: dict[str, int] = {"hour": HOUR_MS, "day": DAY_MS}
MAX_BUCKETS = 800
"""Enough for 31 days by hour or two years by day."""


@dataclass(frozen=True)
class UsageQuery:
    scope: RunScope
    """Its range must be whole buckets (`align`)."""
    bucket: Bucket = "day"
    group_by: str | None = None
    """None, or a key of `usage_sql.GROUPS`: account, key, model, backend."""


def align(start_ms: int, end_ms: int, bucket: Bucket) -> tuple[int, int]:
    """The range rounded out to whole buckets."""
    span = SPANS[bucket]
    return start_ms - start_ms % span, -(-end_ms // span) * span


def usage_report(connection: Connection, query: UsageQuery) -> dict[str, Any]:
    scope, span = query.scope, SPANS[query.bucket]
    column = GROUPS[query.group_by] if query.group_by else None
    tallies: dict[tuple[int, str], Tally] = {}

    def add(bucket: int, group: str, tally: Tally) -> None:
        tallies.setdefault((bucket, group), Tally()).add(tally)

    # Rolled days (for daily answers), then rolled hours, then the runs themselves.
    live_from = scope.start_ms
    for rolled_span in ("day", "hour") if query.bucket == "day" else ("hour",):
        watermark = read_watermark(connection, rolled_span) or live_from
        rolled_end = min(max(watermark, live_from), scope.end_ms)
        if rolled_end > live_from:
            rolled = rolled_tallies(
                connection,
                rolled_span,
                replace(scope, start_ms=live_from, end_ms=rolled_end),
                origin_ms=scope.start_ms,
                bucket_ms=span,
                group=column,
            )
            for (bucket, group), tally in rolled.items():
                add(bucket, group, tally)
        live_from = rolled_end
    if live_from < scope.end_ms:
        live = tally_runs(
            connection,
            replace(scope, start_ms=live_from),
            origin_ms=scope.start_ms,
            span_ms=span,
            group_by=[column] if column else [],
        )
        for key, tally in live.items():
            add(int(key[0]), str(key[1]) if column else "", tally)

    buckets = (scope.end_ms - scope.start_ms) // span
    labels = _labels(connection, query.group_by, {group for _, group in tallies})
    series: list[dict[str, Any]] = []
    grand = Tally()
    for group in sorted({group for _, group in tallies}):
        cells = [tallies.get((number, group), Tally()) for number in range(buckets)]
        total = Tally()
        for cell in cells:
            total.add(cell)
        grand.add(total)
        series.append(
            {
                "group": group,
                "label": labels.get(group, group or "(not started)"),
                "total": describe_tally(total),
                "buckets": [
                    {"start": format_timestamp(scope.start_ms + number * span), **describe_tally(c)}
                    for number, c in enumerate(cells)
                ],
            }
        )
    series.sort(key=lambda entry: -cast(int, entry["total"]["netUsd"]))
    return {
        "from": format_timestamp(scope.start_ms),
        "to": format_timestamp(scope.end_ms),
        "bucket": query.bucket,
        "groupBy": query.group_by,
        "mode": scope.mode,
        "total": describe_tally(grand),
        "series": series,
    }


def describe_tally(tally: Tally) -> dict[str, Any]:
    net = tally.charged - tally.refunded
    return {
        "runs": {status: tally.statuses[status] for status in STATUSES},
        "totalRuns": sum(tally.statuses.values()),
        "chargedUsd": tally.charged,
        "refundedUsd": tally.refunded,
        "netUsd": net,
        "failures": dict(sorted(tally.failures.items())),
        "queueWaitMs": _percentiles(tally.queue_wait),
        "generationMs": _percentiles(tally.generation),
        "upstreamCostUsd": tally.upstream_cost,
        "marginUsd": None if tally.upstream_cost is None else net - tally.upstream_cost,
    }


def _percentiles(histogram: Histogram) -> dict[str, int | None]:
    return {
        "p50": histogram.percentile(0.5),
        "p95": histogram.percentile(0.95),
        "p99": histogram.percentile(0.99),
    }


def _labels(connection: Connection, group_by: str | None, groups: set[str]) -> dict[str, str]:
    """Names to show for account and key groups: the account's name, the key's name and
    prefix."""
    if group_by == "account" and groups:
        accounts = cast(Table, AccountRow.__table__)
        found = connection.execute(
            select(accounts.c.id, accounts.c.name).where(accounts.c.id.in_(groups))
        )
        return {row.id: row.name for row in found}
    if group_by == "key" and groups:
        keys = cast(Table, ApiKeyRow.__table__)
        found = connection.execute(
            select(keys.c.id, keys.c.name, keys.c.prefix).where(keys.c.id.in_(groups))
        )
        return {row.id: f"{row.name} ({row.prefix}...)" for row in found}
    return {}
