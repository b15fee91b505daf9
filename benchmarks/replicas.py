"""Throughput of the runs API with 1 and 2 `runbase serve` replicas sharing PostgreSQL.

Starts two API-only replicas (workers off, access log off) on one PostgreSQL database and
drives them with wrk: "1 replica" sends all connections to the first, "2 replicas" splits
them between both (two wrk processes at once; their requests/s add up, the worse p99
counts). Cases are interleaved round by round so that machine noise hits both alike;
reports medians over rounds and the ratio 2 / 1. Reuses benchmarks/api.py's wrk driver.

    python benchmarks/replicas.py [--database-url URL] [--connections 50] [--seconds 5]
                                  [--rounds 3] [--json]

Without --database-url (or RUNBASE_DATABASE_URL) it starts a throwaway PostgreSQL cluster
with scripts/pg-throwaway. Needs `wrk` and PostgreSQL's server binaries.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from api import (
    BODY,
    free_port,
    interleaved_medians,
    run_wrk,
    runbase_cli,
    wait_for,
    write_post_script,
)

ROOT = Path(__file__).resolve().parents[1]


@contextlib.contextmanager
def postgres(url: str | None) -> Iterator[str]:
    if url:
        yield url
        return
    cluster = tempfile.mkdtemp(prefix="runbase-pg.")
    script = str(ROOT / "scripts" / "pg-throwaway")
    url = subprocess.run([script, "start", cluster], check=True, capture_output=True, text=True)
    try:
        yield url.stdout.strip()
    finally:
        subprocess.run([script, "stop", cluster], check=False)


def start_replicas(data_dir: Path, count: int) -> tuple[list[subprocess.Popen[bytes]], list[str]]:
    env = {**os.environ, "RUNBASE_WORKERS": "0", "RUNBASE_ACCESS_LOG": "false"}
    processes, urls = [], []
    for _ in range(count):
        port = free_port()
        processes.append(
            subprocess.Popen(
                [sys.executable, "-m", "runbase", "serve", "--port", str(port)]
                + ["--data-dir", str(data_dir)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        urls.append(f"http://127.0.0.1:{port}")
        wait_for(urls[-1] + "/healthz")  # one at a time: each start migrates the database
    return processes, urls


def drive(
    urls: list[str], path: str, *, connections: int, seconds: int, key: str, script: str | None
) -> dict[str, float]:
    """wrk against each URL at once, the connections split between them; summed rps."""
    share = connections // len(urls)
    headers = {"Authorization": f"Bearer {key}"}
    with ThreadPoolExecutor(len(urls)) as pool:
        results = list(
            pool.map(
                lambda url: run_wrk(
                    url + path,
                    connections=share,
                    seconds=seconds,
                    headers=headers,
                    script=script,
                ),
                urls,
            )
        )
    return {
        "rps": sum(r["rps"] for r in results),
        "p50_ms": max(r["p50_ms"] for r in results),
        "p99_ms": max(r["p99_ms"] for r in results),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database-url", default=os.environ.get("RUNBASE_DATABASE_URL"))
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")

    with tempfile.TemporaryDirectory() as scratch, postgres(args.database_url) as database_url:
        os.environ["RUNBASE_DATABASE_URL"] = database_url  # for the CLI and both replicas
        data_dir = Path(scratch) / "data"
        runbase_cli(data_dir, "accounts", "create", "bench", "--balance-usd", "1000000")
        created = runbase_cli(
            data_dir,
            *("keys", "create", "--account", "bench", "--rate-limit", "1000000/second", "--json"),
        )
        key = json.loads(created)["key"]
        processes, urls = start_replicas(data_dir, 2)
        post_script = write_post_script(Path(scratch))
        try:
            with httpx.Client(headers={"Authorization": f"Bearer {key}"}) as client:
                run_id = client.post(urls[0] + "/api/v1/runs", json=BODY).json()["id"]
            targets = {
                ("GET", 1): (urls[:1], f"/api/v1/runs/{run_id}", None),
                ("GET", 2): (urls, f"/api/v1/runs/{run_id}", None),
                ("POST", 1): (urls[:1], "/api/v1/runs", post_script),
                ("POST", 2): (urls, "/api/v1/runs", post_script),
            }
            medians = interleaved_medians(
                {
                    case: functools.partial(
                        drive,
                        replicas,
                        path,
                        connections=args.connections,
                        seconds=args.seconds,
                        key=key,
                        script=script,
                    )
                    for case, (replicas, path, script) in targets.items()
                },
                args.rounds,
            )
        finally:
            for process in processes:
                process.terminate()
                process.wait(timeout=10)

    results = {f"{method} x{count}": value for (method, count), value in medians.items()}
    for method in ("GET", "POST"):
        results[f"{method} ratio"] = {
            "rps": results[f"{method} x2"]["rps"] / results[f"{method} x1"]["rps"]
        }
    if args.json:
        print(json.dumps(results, indent=2))
        return
    command = f"python benchmarks/replicas.py --connections {args.connections} "
    command += f"--seconds {args.seconds} --rounds {args.rounds}"
    print(f"`{command}`\n")
    print("| endpoint | replicas | requests/s (median) | p50 ms | p99 ms |")
    print("|---|---|---|---|---|")
    for method in ("GET", "POST"):
        for count in (1, 2):
            r = results[f"{method} x{count}"]
            print(
                f"| {method} | {count} | {r['rps']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} |"
            )
    print(
        f"\n2 replicas / 1: GET {results['GET ratio']['rps']:.2f}x, "
        f"POST {results['POST ratio']['rps']:.2f}x"
    )


if __name__ == "__main__":
    main()
