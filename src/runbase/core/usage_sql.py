"""Usage tallies: runs counted by status, money, failures by code, and time histograms.

One `Tally` per (time bucket, group). Tallies come from two places that must agree to the
unit: `tally_runs` (SQL over `runs`, for time not rolled up yet) and the `usage_rollups`
rollup (`core.usage_rollup`, itself made by `tally_runs`). Money is read from the runs
because the ledger mirrors them exactly: a run's charge is its `cost_micros`, and a failed
or canceled run has exactly one refund of the same amount (billing's unique constraint).

Percentiles come from histograms of milliseconds with fixed buckets: 10 ms wide below 1 s,
then 90 buckets per decade up to 10^8 ms (a bucket is at most 10% of its value wide), so a
reported percentile, the middle of its bucket, is within 5% of the exact one. Histograms
merge by adding counts, so rollups of days add up to any range.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import numpy as np
from sqlalchemy import ColumnElement, Connection, Table, and_, case, func, select

from runbase.storage.tables import RunRow, UpstreamAttemptRow

_RUNS = cast(Table, RunRow.__table__)
_ATTEMPTS = cast(Table, UpstreamAttemptRow.__table__)
HOUR_MS = 3600 * 1000
DAY_MS = 24 * HOUR_MS
ACTIVE = ("pending", "processing")
STATUSES = ("pending", "processing", "succeeded", "failed", "canceled")
REFUNDED = ("failed", "canceled")
GROUPS = {"account": "account_id", "key": "key_id", "model": "model", "backend": "backend"}
"""What usage can be grouped by (the API's name -> the runs column)."""
Mode = Literal["live", "test", "all"]

# (first value, step, end) of each decade of the histogram; indexes count on across them.
_DECADES = (
    (0, 10, 1_000),
    (1_000, 100, 10_000),
    (10_000, 1_000, 100_000),
    (100_000, 10_000, 1_000_000),
    (1_000_000, 100_000, 10_000_000),
    (10_000_000, 1_000_000, 100_000_000),
)
_OFFSETS = [0]
for _start, _step, _end in _DECADES:
    _OFFSETS.append(_OFFSETS[-1] + (_end - _start) // _step)
OVERFLOW_INDEX = _OFFSETS[-1]
"""Durations of 10^8 ms (28 hours) and more."""


def histogram_index(column: ColumnElement[Any]) -> ColumnElement[int]:
    """SQL: the histogram bucket of a duration in ms (a negative one, clock skew, is 0)."""
    whens: list[tuple[Any, Any]] = [(column < 0, 0)]
    for (start, step, end), offset in zip(_DECADES, _OFFSETS, strict=False):
        whens.append((column < end, offset + (column - start) // step))
    return case(*whens, else_=OVERFLOW_INDEX)


def bucket_bounds(index: int) -> tuple[int, int]:
    """The [low, high) milliseconds of histogram bucket `index`."""
    for (start, step, _end), offset, following in zip(
        _DECADES, _OFFSETS, _OFFSETS[1:], strict=False
    ):
        if index < following:
            low = start + (index - offset) * step
            return low, low + step
    return _DECADES[-1][2], _DECADES[-1][2]


class Histogram:
    """Counts per histogram bucket, as a numpy array (merging thousands of rolled-up rows
    is then one vector addition each, not a dict update per bucket)."""

    __slots__ = ("counts",)

    def __init__(self) -> None:
        self.counts: np.ndarray[Any, np.dtype[np.int64]] | None = None  # None while empty

    def _array(self) -> np.ndarray[Any, np.dtype[np.int64]]:
        if self.counts is None:
            self.counts = np.zeros(OVERFLOW_INDEX + 1, dtype=np.int64)
        return self.counts

    def add(self, index: int, count: int) -> None:
        self._array()[index] += count

    def merge(self, other: Histogram) -> None:
        if other.counts is not None:
            self._array()[:] += other.counts

    def total(self) -> int:
        return 0 if self.counts is None else int(self.counts.sum())

    def to_bytes(self) -> bytes:
        """Sparse: (bucket index, count) pairs of the non-empty buckets, little-endian u32."""
        if self.counts is None:
            return b""
        indexes = np.flatnonzero(self.counts)
        pairs = np.stack([indexes, self.counts[indexes]], axis=1)
        return pairs.astype("<u4").tobytes()

    def merge_stored(self, stored: list[bytes]) -> None:
        """Add histograms stored with `to_bytes`: all of them in one vector operation."""
        pairs = np.frombuffer(b"".join(stored), dtype="<u4").reshape(-1, 2)
        if len(pairs):
            added = np.bincount(pairs[:, 0], weights=pairs[:, 1], minlength=OVERFLOW_INDEX + 1)
            self._array()[:] += added.astype(np.int64)

    def percentile(self, fraction: float) -> int | None:
        """The middle of the bucket that holds the `fraction` quantile; None if empty."""
        total = self.total()
        if total == 0 or self.counts is None:
            return None
        rank = max(1, -(-int(fraction * total * 1000) // 1000))  # ceil, without float noise
        index = int(np.searchsorted(np.cumsum(self.counts), rank))
        low, high = bucket_bounds(index)
        return (low + high) // 2


@dataclass
class Tally:
    """Usage of one (bucket, group) cell; tallies add up."""

    statuses: Counter[str] = field(default_factory=Counter)
    charged: int = 0
    refunded: int = 0
    upstream_cost: int | None = None
    failures: Counter[str] = field(default_factory=Counter)
    queue_wait: Histogram = field(default_factory=Histogram)
    generation: Histogram = field(default_factory=Histogram)

    def add(self, other: Tally) -> None:
        self.statuses.update(other.statuses)
        self.charged += other.charged
        self.refunded += other.refunded
        if other.upstream_cost is not None:
            self.upstream_cost = (self.upstream_cost or 0) + other.upstream_cost
        self.failures.update(other.failures)
        self.queue_wait.merge(other.queue_wait)
        self.generation.merge(other.generation)


@dataclass(frozen=True)
class RunScope:
    """Which runs count: a creation-time range and optional filters."""

    start_ms: int
    end_ms: int
    account_id: str | None = None
    key_id: str | None = None
    model: str | None = None
    backend: str | None = None
    mode: Mode = "live"

    def conditions(self) -> list[ColumnElement[bool]]:
        runs = _RUNS.c
        found = [runs.created_ms >= self.start_ms, runs.created_ms < self.end_ms]
        for column, value in (
            (runs.account_id, self.account_id),
            (runs.key_id, self.key_id),
            (runs.model, self.model),
        ):
            if value is not None:
                found.append(column == value)
        if self.backend is not None:  # "" = runs that never reached an engine
            found.append(func.coalesce(runs.backend, "") == self.backend)
        if self.mode != "all":
            found.append(runs.is_test.is_(self.mode == "test"))
        return found


def upstream_cost_per_run() -> ColumnElement[int]:
    """SQL, per row of `runs`: what the providers charged for the run, the sum of its
    attempts' `cost_micros` (`upstream_attempts`, one row per provider it went to); NULL
    for a run that never went to a provider (a compute engine's), so that usage says null,
    not zero, where nothing upstream was paid.

    A run's whole upstream cost counts against the run: grouped by `backend`, a provider's
    upstream cost and margin are those of the runs it made (or where they ended), attempts
    lost to failover at other providers included, because that run's price paid for them.
    With the built-in price tables an attempt that failed over costs nothing (failed tasks
    and tasks stopped in a queue are not billed); only a success or a task that could not
    be stopped costs, and either ends the run at that provider, so the figures are also
    what each provider billed. `upstream_attempts` keeps every attempt's own provider and
    cost for reconciling against a provider's invoice.
    """
    return (
        select(func.sum(_ATTEMPTS.c.cost_micros))
        .where(_ATTEMPTS.c.run_id == _RUNS.c.id)
        .scalar_subquery()
    )


def tally_runs(
    connection: Connection,
    scope: RunScope,
    *,
    origin_ms: int,
    span_ms: int,
    group_by: Sequence[str] = (),
) -> dict[tuple[Any, ...], Tally]:
    """Tallies of the runs in `scope`, keyed by (bucket number, *group values); the bucket
    number counts `span_ms` from `origin_ms`. `group_by` names columns of `runs`."""
    runs = _RUNS.c
    bucket = ((runs.created_ms - origin_ms) // span_ms).label("bucket")
    # A run that never reached an engine has no backend: its group is "".
    groups = [
        func.coalesce(runs.backend, "").label(name) if name == "backend" else runs[name]
        for name in group_by
    ]
    keys = [bucket, *groups]
    where = and_(*scope.conditions())
    tallies: dict[tuple[Any, ...], Tally] = {}

    def cell(row: Any) -> Tally:
        return tallies.setdefault(tuple(row[: len(keys)]), Tally())

    money = [func.count(), func.sum(runs.cost_micros), func.sum(upstream_cost_per_run())]
    by_status = select(*keys, runs.status, runs.error_code, *money).where(where)
    for row in connection.execute(by_status.group_by(*keys, runs.status, runs.error_code)):
        status, code, count, cost = row[len(keys) : len(keys) + 4]
        tally = cell(row)
        tally.statuses[status] += count
        tally.charged += int(cost or 0)
        if status in REFUNDED:
            tally.refunded += int(cost or 0)
        if status == "failed":
            tally.failures[code or "unknown"] += count
        if row[-1] is not None:
            tally.upstream_cost = (tally.upstream_cost or 0) + int(row[-1])

    for attribute, duration, extra in (
        ("queue_wait", runs.started_ms - runs.created_ms, runs.started_ms.is_not(None)),
        (
            "generation",
            runs.completed_ms - runs.started_ms,
            and_(runs.status == "succeeded", runs.started_ms.is_not(None)),
        ),
    ):
        index = histogram_index(duration).label("h")
        query = select(*keys, index, func.count()).where(where, extra)
        for row in connection.execute(query.group_by(*keys, index)):
            getattr(cell(row), attribute).add(int(row[-2]), int(row[-1]))
    return tallies
