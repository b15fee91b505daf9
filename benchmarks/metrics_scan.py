"""Poll latency while `/metrics` is scraped every second, with many runs in the database.

`/metrics` counts every run by status and model (a GROUP BY over the whole table). On
SQLite, reads used to run on the event loop, so with 500,000 runs each scrape stopped
every request for the length of that scan. This fills a SQLite database with `--runs` runs,
starts `runbase serve` (workers off, access log off) from `--src`, and polls one run over
`--connections` keep-alive connections, in rounds alternating "quiet" (no scrape) and
"scraped" (GET /metrics once a second), so that machine noise hits both alike.

    python benchmarks/metrics_scan.py [--runs 500000] [--seconds 8] [--rounds 2] \\
        [--connections 8] [--src src] [--json]

`--src` picks the runbase sources the server runs (another checkout's `src`, to compare
before and after a change); the database is filled through those sources' own schema.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fill(data_dir: Path, count: int) -> None:
    """(Run by the chosen sources.) A migrated database with one account, one key and
    `count` runs cloned from one real run: 90% succeeded, 5% failed, 5% pending. Prints
    the key and the id of a succeeded run as JSON."""
    from sqlalchemy import insert, select

    from runbase.core import billing, creation, keys
    from runbase.storage.db import Database
    from runbase.storage.migrate import upgrade_database
    from runbase.storage.tables import RunRow

    data_dir.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{data_dir / 'runbase.db'}"
    upgrade_database(url)
    database = Database(url)
    table = RunRow.__table__
    with database.transaction() as connection:
        account = billing.create_account(connection, name="bench", balance_micros=10**12)
        _, secret = keys.create_key(connection, account_id=account.id, rate_limit="1000000/second")
        key = keys.find_key(connection, secret)
        assert key is not None
        first = creation.create_run(
            connection,
            key=key,
            model="bytedance/seedance-1.5-pro",
            validated_input={
                "prompt": "A ceramic lamp on a wooden desk, warm light",
                "aspect_ratio": "16:9",
                "resolution": "720p",
                "duration": "4",
                "generate_audio": True,
                "image_urls": [],
            },
            cost=207_360,
        )
        template = dict(
            connection.execute(select(table).where(table.c.id == first.id)).one()._mapping
        )
        base_ms = template["created_ms"] - count * 1000
        batch: list[dict[str, Any]] = []
        for index in range(count):
            status = "pending" if index % 20 == 0 else "failed" if index % 20 == 1 else "succeeded"
            row = {
                **template,
                "id": f"run_bench{index:017d}",
                "status": status,
                "created_ms": base_ms + index * 1000,
                "output_keys": [f"runs/run_bench{index:017d}/output.mp4"]
                if status == "succeeded"
                else None,
            }
            batch.append(row)
            if len(batch) == 10_000:
                connection.execute(insert(table), batch)
                batch.clear()
        if batch:
            connection.execute(insert(table), batch)
    database.dispose()
    print(json.dumps({"key": secret, "run_id": f"run_bench{count - 5:017d}"}))


async def _poll(port: int, path: str, key: str, until: float, latencies: list[float]) -> None:
    """One keep-alive connection, polling until `until`."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    request = (
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {key}\r\n\r\n"
    ).encode()
    try:
        while time.perf_counter() < until:
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            if not head.startswith(b"HTTP/1.1 200"):
                raise SystemExit(f"poll answered {head[:40]!r}")
            latencies.append(time.perf_counter() - started)
    finally:
        writer.close()


async def _scrape(url: str, until: float, durations: list[float]) -> None:
    async with httpx.AsyncClient(timeout=60) as client:
        while time.perf_counter() < until:
            started = time.perf_counter()
            answer = await client.get(url)
            answer.raise_for_status()
            durations.append(time.perf_counter() - started)
            await asyncio.sleep(max(0.0, 1.0 - (time.perf_counter() - started)))


async def one_round(
    port: int, key: str, run_id: str, *, seconds: float, connections: int, scraped: bool
) -> dict[str, float]:
    latencies: list[float] = []
    scrapes: list[float] = []
    until = time.perf_counter() + seconds
    tasks = [
        _poll(port, f"/api/v1/runs/{run_id}", key, until, latencies) for _ in range(connections)
    ]
    if scraped:
        tasks.append(_scrape(f"http://127.0.0.1:{port}/metrics", until, scrapes))
    await asyncio.gather(*tasks)
    ordered = sorted(latencies)
    return {
        "rps": len(ordered) / seconds,
        "p50_ms": 1000 * ordered[len(ordered) // 2],
        "p99_ms": 1000 * ordered[int(len(ordered) * 0.99)],
        "max_ms": 1000 * ordered[-1],
        "scrape_ms": 1000 * statistics.median(scrapes) if scrapes else 0.0,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=500_000)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--src", type=Path, default=HERE.parent / "src")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--fill", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fill is not None:
        fill(args.fill, args.runs)
        return

    env = {**os.environ, "PYTHONPATH": str(args.src.resolve())}
    with tempfile.TemporaryDirectory() as scratch:
        data_dir = Path(scratch) / "data"
        filled = subprocess.run(
            [sys.executable, __file__, "--fill", str(data_dir), "--runs", str(args.runs)],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        )
        target = json.loads(filled.stdout.strip().splitlines()[-1])
        port = free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "runbase", "serve", "--port", str(port)]
            + ["--data-dir", str(data_dir)],
            env={**env, "RUNBASE_WORKERS": "0", "RUNBASE_ACCESS_LOG": "false"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1)
                    break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise SystemExit("the server did not start") from None
                    time.sleep(0.1)
            samples: dict[str, list[dict[str, float]]] = {"quiet": [], "scraped": []}
            for _ in range(args.rounds):
                for case in samples:
                    samples[case].append(
                        asyncio.run(
                            one_round(
                                port,
                                target["key"],
                                target["run_id"],
                                seconds=args.seconds,
                                connections=args.connections,
                                scraped=case == "scraped",
                            )
                        )
                    )
        finally:
            server.terminate()
            server.wait(timeout=30)

    results = {
        case: {metric: statistics.median(run[metric] for run in runs) for metric in runs[0]}
        for case, runs in samples.items()
    }
    if args.json:
        print(json.dumps(results, indent=2))
        return
    print(
        f"`python benchmarks/metrics_scan.py --runs {args.runs} --seconds {args.seconds:g} "
        f"--rounds {args.rounds} --connections {args.connections}`\n"
    )
    print("| polls | requests/s | p50 ms | p99 ms | max ms | /metrics scrape ms |")
    print("|---|---|---|---|---|---|")
    for case, r in results.items():
        print(
            f"| {case} | {r['rps']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} "
            f"| {r['max_ms']:.0f} | {r['scrape_ms']:.0f} |"
        )


if __name__ == "__main__":
    main()
