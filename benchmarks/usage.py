"""The usage query over a million runs: 30 days by day, as the console asks for it.

Writes `--runs` runs (default 1,000,000) spread evenly over the last `--days` days (30),
by 20 accounts with 60 keys, on three backends, 90% succeeded, 7% failed with one of three
error codes, 3% canceled; then rolls up the settled days and hours (timed once) and times,
in interleaved rounds, at 23:54 UTC (the worst time: today is not a settled day yet):

- day, rollup: 30 days by day, every account (the console's usage page): settled days from
  the day rollup, today's settled hours from the hour rollup, the last minutes from `runs`;
- day, rollup, per backend: the same, one series per backend (the per-provider charts);
- day, one account: the same for one account (a filtered view);
- day, no rollup: the first query again with the rollup ignored (every day read from
  `runs`), what the answer costs before the rollup has caught up;
- hour, 2 days and hour, 30 days: by hour (the hour rollup, then the last minutes).

Each query is `core.usage.usage_report` on its own connection, as the admin API runs it.
Run from the repository root (SQLite in a temporary directory, or any database URL):

    .venv/bin/python benchmarks/usage.py [--runs 1000000] [--rounds 15]
        [--database-url postgresql+psycopg://user@127.0.0.1:5432/db]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, insert

from runbase.core import billing, keys, usage, usage_rollup
from runbase.core.clock import now_ms
from runbase.core.usage_sql import DAY_MS, RunScope, tally_runs
from runbase.http.routes.admin.rollup import roll_up_settled
from runbase.storage.db import Database
from runbase.storage.migrate import upgrade_database
from runbase.storage.tables import RunRow

CHUNK = 20_000


def seed(database: Database, runs: int, days: int, now: int) -> list[str]:
    rng = random.Random(2026)
    with database.transaction() as connection:
        accounts = [
            billing.create_account(connection, name=f"account-{n}", balance_micros=0).id
            for n in range(20)
        ]
        owned = []
        for n in range(60):
            account = accounts[n % len(accounts)]
            row, _ = keys.create_key(connection, account_id=account, name=f"key-{n}")
            owned.append((account, row.id))
    start = now - days * DAY_MS
    runs_table = RunRow.__table__
    for offset in range(0, runs, CHUNK):
        batch = []
        for number in range(offset, min(runs, offset + CHUNK)):
            account, key_id = rng.choice(owned)
            created = start + (number * days * DAY_MS) // runs + rng.randrange(1000)
            roll = rng.random()
            status = "succeeded" if roll < 0.90 else "failed" if roll < 0.97 else "canceled"
            started = created + rng.randrange(20, 4000)
            batch.append(
                {
                    "id": f"run_bench{number:012d}",
                    "account_id": account,
                    "key_id": key_id,
                    "model": "bytedance/seedance-1.5-pro",
                    "input": {"prompt": "benchmark"},
                    "status": status,
                    "cost_micros": rng.choice((103_680, 207_360, 466_560)),
                    "backend": rng.choice(("ark", "fal", "ltx2")),
                    "error_code": (
                        rng.choice(("upstream_error", "timeout", "generation_failed"))
                        if status == "failed"
                        else None
                    ),
                    "created_ms": created,
                    "started_ms": started,
                    "completed_ms": started + rng.randrange(20_000, 120_000),
                    "logs": [],
                    "progress": 1.0,
                    "attempts": 1,
                }
            )
        with database.transaction() as connection:
            connection.execute(insert(runs_table), batch)
    return accounts


def timed(database: Database, work: Callable[[Connection], Any]) -> float:
    started = time.perf_counter()
    with database.connect() as connection:
        work(connection)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument("--database-url", default=None)
    parser.add_argument(
        "--hour-of-day",
        type=float,
        default=23.9,
        help="the UTC time of day the benchmark runs at: late in the day (the default) is the "
        "worst case, with a whole day of runs not in the day rollup yet",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        url = args.database_url or f"sqlite:///{Path(scratch) / 'runbase.db'}"
        upgrade_database(url)
        database = Database(url)
        now = usage_rollup.floor_to("day", now_ms()) + int(args.hour_of_day * 3_600_000)
        began = time.perf_counter()
        accounts = seed(database, args.runs, args.days, now)
        print(
            f"wrote {args.runs:,} runs in {time.perf_counter() - began:.1f} s ({url.split(':')[0]})"
        )
        began = time.perf_counter()
        rolled = asyncio.run(roll_up_settled(database, now=now))
        print(f"rolled up {rolled} days and hours in {time.perf_counter() - began:.1f} s")
        with database.connect() as connection:
            for span in ("day", "hour"):
                settled = usage_rollup.settled_until(connection, now, span)  # type: ignore[arg-type]
                assert usage_rollup.read_watermark(connection, span) == settled  # type: ignore[arg-type]

        start, end = usage.align(now - args.days * DAY_MS, now, "day")
        hours = usage.align(now - 2 * DAY_MS, now, "hour")

        def report(scope: RunScope, **options: Any) -> Callable[[Connection], Any]:
            query = usage.UsageQuery(scope, **options)
            return lambda connection: usage.usage_report(connection, query)

        def no_rollup(connection: Connection) -> Any:  # the answer's tallies, all from runs
            return tally_runs(connection, RunScope(start, end), origin_ms=start, span_ms=DAY_MS)

        variants: dict[str, Callable[[Connection], Any]] = {
            "day, rollup": report(RunScope(start, end)),
            "day, rollup, per backend": report(RunScope(start, end), group_by="backend"),
            "day, one account": report(RunScope(start, end, account_id=accounts[3])),
            "day, no rollup": no_rollup,
            "hour, 2 days": report(RunScope(*hours), bucket="hour"),
            "hour, 30 days": report(RunScope(*usage.align(start, now, "hour")), bucket="hour"),
        }
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, work in variants.items():
                times[name].append(timed(database, work))
        database.dispose()

    print(f"\n{args.runs:,} runs over {args.days} days, {args.rounds} rounds interleaved\n")
    print("| query | median ms | p99 ms |")
    print("|---|---|---|")
    for name, samples in times.items():
        ordered = sorted(samples)
        p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
        print(f"| {name} | {statistics.median(samples) * 1000:.1f} | {p99 * 1000:.1f} |")


if __name__ == "__main__":
    main()
