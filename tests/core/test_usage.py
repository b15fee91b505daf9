"""Usage figures from synthetic runs spread over days: the SQL tallies, the daily rollup
and the answer agree with the same figures computed here in Python, run by run."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import insert, select

from runbase.core import usage, usage_rollup
from runbase.core.usage_sql import DAY_MS, HOUR_MS, Histogram, RunScope, bucket_bounds
from runbase.http.routes.admin.rollup import roll_up_settled
from runbase.storage.db import Database
from runbase.storage.tables import ApiKeyRow, RunRow, UpstreamAttemptRow, UsageRollupRow
from support import Admin, make_settings

START = 1_790_000_000_000 - 1_790_000_000_000 % DAY_MS  # a UTC midnight
DAYS = 4


def make_runs(admin: Admin, rng: random.Random) -> list[dict[str, Any]]:
    for number in range(2):
        account = admin.create_account(f"acct{number}")
        admin.create_key(account)
        admin.create_key(account, is_test=True)
    keys = [(key.account_id, key.id, key.is_test) for key in admin.select(ApiKeyRow.__table__)]
    runs = []
    for number in range(600):
        account, key_id, is_test = rng.choice(keys)
        created = START + rng.randrange(DAYS * DAY_MS)
        statuses = ["succeeded"] * 6 + ["failed", "failed", "canceled"]
        if created >= START + (DAYS - 1) * DAY_MS:  # the last day is still going on
            statuses.append("pending")
        status = rng.choice(statuses)
        started = None if status == "pending" else created + rng.randrange(0, 20_000)
        completed = None if status == "pending" else started + rng.randrange(500, 300_000)  # type: ignore[operator]
        runs.append(
            {
                "id": f"run_{number:04d}",
                "account_id": account,
                "key_id": key_id,
                "model": rng.choice(["bytedance/seedance-1.5-pro", "other/model"]),
                "input": {"prompt": "x"},
                "status": status,
                "cost_micros": rng.choice([103_680, 207_360, 414_720]),
                "backend": None if status == "pending" else rng.choice(["ark", "fal"]),
                "error_code": rng.choice(["timeout", "upstream_error"])
                if status == "failed"
                else None,
                "created_ms": created,
                "started_ms": started,
                "completed_ms": completed,
                "is_test": is_test,
                "logs": [],
                "progress": 0.0,
                "attempts": 1,
            }
        )
    return runs


def expected(
    runs: list[dict[str, Any]], span: int, scope: RunScope, group: str | None
) -> dict[Any, Any]:
    """(group, bucket) -> figures, straight from the runs."""
    column = {"account": "account_id", "key": "key_id", "model": "model", "backend": "backend"}
    figures: dict[Any, Any] = {}
    for run in runs:
        if not scope.start_ms <= run["created_ms"] < scope.end_ms:
            continue
        if scope.mode != "all" and run["is_test"] != (scope.mode == "test"):
            continue
        if scope.backend is not None and (run["backend"] or "") != scope.backend:
            continue
        name = (run[column[group]] or "") if group else ""
        cell = figures.setdefault(
            (name, (run["created_ms"] - scope.start_ms) // span),
            {
                "runs": Counter(),
                "charged": 0,
                "refunded": 0,
                "failures": Counter(),
                "gen": [],
                "queue": [],
            },
        )
        cell["runs"][run["status"]] += 1
        cell["charged"] += run["cost_micros"]
        if run["status"] in ("failed", "canceled"):
            cell["refunded"] += run["cost_micros"]
        if run["status"] == "failed":
            cell["failures"][run["error_code"]] += 1
        if run["status"] == "succeeded":
            cell["gen"].append(run["completed_ms"] - run["started_ms"])
        if run["started_ms"] is not None:
            cell["queue"].append(run["started_ms"] - run["created_ms"])
    return figures


def check(report: dict[str, Any], figures: dict[Any, Any]) -> None:
    seen = set()
    for series in report["series"]:
        for number, bucket in enumerate(series["buckets"]):
            cell = figures.get((series["group"], number))
            if cell is None:
                assert bucket["totalRuns"] == 0
                continue
            seen.add((series["group"], number))
            assert {k: v for k, v in bucket["runs"].items() if v} == dict(cell["runs"])
            assert bucket["chargedUsd"] == cell["charged"]
            assert bucket["refundedUsd"] == cell["refunded"]
            assert bucket["netUsd"] == cell["charged"] - cell["refunded"]
            assert bucket["failures"] == dict(cell["failures"])
            for name, values in (("generationMs", cell["gen"]), ("queueWaitMs", cell["queue"])):
                durations = sorted(values)
                for label, fraction in (("p50", 0.5), ("p95", 0.95)):
                    if not durations:
                        assert bucket[name][label] is None
                        continue
                    exact = durations[max(0, -(-len(durations) * int(fraction * 100) // 100) - 1)]
                    low, high = bucket_bounds_of(exact)
                    assert low <= bucket[name][label] < high, (name, label)
    assert seen == set(figures)


def bucket_bounds_of(value: int) -> tuple[int, int]:
    """The bucket holding `value`, found through the same bounds the answer uses."""
    index = 0
    while bucket_bounds(index)[1] <= value:
        index += 1
    return bucket_bounds(index)


@pytest.fixture
def loaded(tmp_path: Path) -> tuple[Database, list[dict[str, Any]]]:
    settings = make_settings(tmp_path / "data")
    admin = Admin(settings)
    runs = make_runs(admin, random.Random(7))
    database = Database(settings.resolved_database_url)
    with database.transaction() as connection:
        connection.execute(insert(RunRow.__table__), runs)
    return database, runs


@pytest.mark.parametrize("group", [None, "account", "key", "model", "backend"])
@pytest.mark.parametrize("mode", ["live", "test", "all"])
def test_daily_figures_match_the_runs_before_and_after_the_rollup(
    loaded: tuple[Database, list[dict[str, Any]]], group: str | None, mode: str
) -> None:
    database, runs = loaded
    scope = RunScope(START, START + DAYS * DAY_MS, mode=mode)  # type: ignore[arg-type]
    query = usage.UsageQuery(scope, bucket="day", group_by=group)
    figures = expected(runs, DAY_MS, scope, group)
    with database.connect() as connection:
        live = usage.usage_report(connection, query)
    check(live, figures)

    # The last day holds pending runs: the days before it settle, and its hours before the
    # oldest pending run's.
    now = START + DAYS * DAY_MS + HOUR_MS
    oldest_pending = min(r["created_ms"] for r in runs if r["status"] == "pending")
    asyncio.run(roll_up_settled(database, now=now))
    with database.connect() as connection:
        days = usage_rollup.read_watermark(connection, "day")
        hours = usage_rollup.read_watermark(connection, "hour")
        rolled = connection.execute(select(UsageRollupRow.__table__)).all()
        after = usage.usage_report(connection, query)
    assert days == START + (DAYS - 1) * DAY_MS
    assert hours == usage_rollup.floor_to("hour", oldest_pending) > days
    assert {row.span for row in rolled} == {"day", "hour"}  # the answer reads the rollup ...
    assert after == live  # ... and says exactly the same
    database.dispose()


def test_hourly_figures_and_filters(loaded: tuple[Database, list[dict[str, Any]]]) -> None:
    database, runs = loaded
    scope = RunScope(START + DAY_MS, START + DAYS * DAY_MS, backend="ark", mode="all")
    query = usage.UsageQuery(scope, bucket="hour", group_by="model")
    with database.connect() as connection:
        live = usage.usage_report(connection, query)
    assert len(live["series"][0]["buckets"]) == (DAYS - 1) * 24
    check(live, expected(runs, HOUR_MS, scope, "model"))
    asyncio.run(roll_up_settled(database, now=START + DAYS * DAY_MS + HOUR_MS))
    with database.connect() as connection:
        assert usage.usage_report(connection, query) == live
    database.dispose()


def test_only_settled_days_are_rolled_up_and_only_once(
    loaded: tuple[Database, list[dict[str, Any]]],
) -> None:
    database, runs = loaded
    oldest_pending = min(r["created_ms"] for r in runs if r["status"] == "pending")
    now = START + 30 * DAY_MS
    days = (oldest_pending - START) // DAY_MS
    hours = (oldest_pending - START) // HOUR_MS
    assert asyncio.run(roll_up_settled(database, now=now)) == days + hours
    assert asyncio.run(roll_up_settled(database, now=now)) == 0
    with database.connect() as connection:
        for span in ("day", "hour"):
            assert usage_rollup.read_watermark(connection, span) == usage_rollup.floor_to(
                span, oldest_pending
            )
        day = usage_rollup.floor_to("day", oldest_pending) - DAY_MS
        tallies = usage_rollup.tally_bucket(connection, "day", day)
    # A second server that rolled the same day late writes nothing.
    with database.transaction() as connection:
        assert usage_rollup.store_bucket(connection, "day", day, tallies) is False
    database.dispose()


def test_percentiles_come_from_the_bucket_that_holds_them() -> None:
    histogram = Histogram()
    for index, count in ((0, 50), (100, 45), (300, 5)):
        histogram.add(index, count)
    assert histogram.percentile(0.5) == 5  # bucket 0 is [0, 10) ms
    assert histogram.percentile(0.95) == 1050  # bucket 100 is [1000, 1100)
    assert histogram.percentile(0.99) == bucket_bounds(300)[0] + 5_000
    assert Histogram().percentile(0.5) is None
    copy = Histogram()
    copy.merge_stored([histogram.to_bytes(), histogram.to_bytes()])
    assert copy.counts is not None and histogram.counts is not None
    assert (copy.counts == 2 * histogram.counts).all() and Histogram().to_bytes() == b""


def test_upstream_cost_and_margin(loaded: tuple[Database, list[dict[str, Any]]]) -> None:
    """Per provider: upstream cost is what its runs' attempts cost (a failover's lost
    attempt at another provider included: the run paid for it), margin is net spend minus
    it; the same before and after the rollup; null, not zero, where nothing went upstream."""
    database, runs = loaded
    rng = random.Random(11)
    attempts: list[dict[str, Any]] = []
    costs: Counter[str] = Counter()
    for run in runs:
        if not run["backend"] or run["is_test"]:
            continue
        if run["backend"] == "ark" and rng.random() < 0.3:  # fal failed first, and billed
            attempts.append(attempt_row(run, "fal", 5_000))
            costs["ark"] += 5_000
        cost = run["cost_micros"] // 2 if run["status"] == "succeeded" else 0
        attempts.append(attempt_row(run, run["backend"], cost))
        costs[run["backend"]] += cost
    with database.transaction() as connection:
        connection.execute(insert(UpstreamAttemptRow.__table__), renumbered(attempts))
        # An attempt still upstream has no cost yet: it adds nothing.
        pending = next(r for r in runs if r["status"] == "pending" and not r["is_test"])
        open_attempt = attempt_row(pending, "fal", None) | {"state": "accepted", "number": 1}
        connection.execute(insert(UpstreamAttemptRow.__table__), [open_attempt])
    scope = RunScope(START, START + DAYS * DAY_MS)
    query = usage.UsageQuery(scope, bucket="day", group_by="backend")
    with database.connect() as connection:
        live = usage.usage_report(connection, query)
        whole = usage.usage_report(connection, usage.UsageQuery(scope, bucket="day"))
    groups = {series["group"]: series["total"] for series in live["series"]}
    assert set(costs) == {"ark", "fal"} and set(groups) >= {"ark", "fal", ""}
    for group, total in groups.items():
        assert total["upstreamCostUsd"] == costs.get(group), group
        if total["upstreamCostUsd"] is not None:
            assert total["marginUsd"] == total["netUsd"] - total["upstreamCostUsd"]
    assert groups[""]["upstreamCostUsd"] is None and groups[""]["marginUsd"] is None
    [everything] = whole["series"]
    assert everything["total"]["upstreamCostUsd"] == sum(costs.values())

    asyncio.run(roll_up_settled(database, now=START + DAYS * DAY_MS + HOUR_MS))
    with database.connect() as connection:
        stored = connection.execute(select(UsageRollupRow.__table__)).all()
        after = usage.usage_report(connection, query)
    assert any(row.upstream_cost_micros for row in stored)  # the rollup keeps it
    assert after == live
    database.dispose()


def attempt_row(run: dict[str, Any], provider: str, cost: int | None) -> dict[str, Any]:
    """A finished attempt of `run`, as the gateway leaves it in `upstream_attempts`
    (numbered by `renumbered`)."""
    succeeded = cost is not None and provider == run["backend"] and run["status"] == "succeeded"
    return {
        "run_id": run["id"],
        "number": 0,
        "provider": provider,
        "state": "succeeded" if succeeded else "failed",
        "task_id": f"task-{run['id']}-{provider}",
        "cost_micros": cost,
        "created_ms": run["created_ms"],
    }


def renumbered(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each run's attempts numbered 1, 2, ... in order."""
    seen: Counter[str] = Counter()
    for row in rows:
        seen[row["run_id"]] += 1
        row["number"] = seen[row["run_id"]]
    return rows
