"""Throughput and latency of the runs API next to a bare FastAPI endpoint, in one run.

Starts `runbase serve` (workers off, so only the API is measured) and benchmarks/bare_app.py
as separate uvicorn processes on 127.0.0.1, then drives both with wrk at the same
concurrency, interleaving rounds so that machine noise hits both alike. Reports medians
over rounds and the ratios runbase / bare.

    python benchmarks/api.py [--connections 50] [--seconds 5] [--rounds 3]
                             [--baseline-src DIR] [--json]

`--baseline-src` also starts a second runbase server from other sources (another
checkout's `src`, e.g. `git archive main src | tar -x -C /tmp/main`), with its own data
directory, in the same interleaved rounds: before and after side by side, each with its
ratio to the same bare endpoint.

Needs `wrk` (Debian package `wrk`).
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import httpx

HERE = Path(__file__).resolve().parent
K = TypeVar("K")
BODY = {
    "model": "bytedance/seedance-1.5-pro",
    "input": {"prompt": "A ceramic lamp on a wooden desk, warm light"},
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit(f"server at {url} did not start")


def runbase_cli(data_dir: Path, *args: str, src: Path | None = None) -> str:
    command = [sys.executable, "-m", "runbase", *args, "--data-dir", str(data_dir)]
    env = {**os.environ, "PYTHONPATH": str(src)} if src else None
    return subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout


def start_runbase(data_dir: Path, src: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    """`runbase serve` from `src` on a new data directory, with a key: (process, URL, key)."""
    runbase_cli(data_dir, "accounts", "create", "bench", "--balance-usd", "1000000", src=src)
    created = runbase_cli(
        data_dir,
        *("keys", "create", "--account", "bench", "--rate-limit", "1000000/second", "--json"),
        src=src,
    )
    key = json.loads(created)["key"]
    # Without access logs: the benchmark measures the API, not the log.
    env = {**os.environ, "PYTHONPATH": str(src), "RUNBASE_WORKERS": "0"}
    env["RUNBASE_ACCESS_LOG"] = "false"
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "runbase", "serve", "--port", str(port)]
        + ["--data-dir", str(data_dir)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    wait_for(url + "/healthz")
    return process, url, key


def start_bare() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    bare = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bare_app:app", "--port", str(port)]
        + ["--log-level", "warning", "--no-access-log"],
        cwd=HERE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    wait_for(url + "/bare/x")
    return bare, url


def run_wrk(
    url: str, *, connections: int, seconds: int, headers: dict[str, str], script: str | None
) -> dict[str, float]:
    command = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    if script:
        command += ["-s", script]
    output = subprocess.run([*command, url], check=True, capture_output=True, text=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if errors:
        raise SystemExit(f"{errors.group(1)} failed requests against {url}:\n{output}")
    return {"rps": rps, "p50_ms": _latency(output, "50%"), "p99_ms": _latency(output, "99%")}


def _latency(output: str, percentile: str) -> float:
    value, unit = re.search(rf"{percentile}\s+([\d.]+)(us|ms|s)", output).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def write_post_script(directory: Path) -> str:
    """A wrk script that POSTs the create body."""
    script = directory / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {json.dumps(json.dumps(BODY))}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
    )
    return str(script)


def interleaved_medians(
    cases: dict[K, Callable[[], dict[str, float]]], rounds: int
) -> dict[K, dict[str, float]]:
    """Run every case once per round, cases interleaved so that machine noise hits all
    alike; the median of each metric per case."""
    samples: dict[K, list[dict[str, float]]] = {case: [] for case in cases}
    for _ in range(rounds):
        for case, run in cases.items():
            samples[case].append(run())
    return {
        case: {metric: statistics.median(sample[metric] for sample in runs) for metric in runs[0]}
        for case, runs in samples.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--seconds", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--baseline-src", type=Path, default=None)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")
    sources = {"runbase": HERE.parent / "src"}
    if args.baseline_src is not None:
        sources["baseline"] = args.baseline_src.resolve()

    processes: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory() as scratch:
        post_script = write_post_script(Path(scratch))
        try:
            bare, bare_url = start_bare()
            processes.append(bare)
            targets = {
                ("GET", "bare"): (f"{bare_url}/bare/run_01jbench0000000000000000000", {}, None),
                ("POST", "bare"): (f"{bare_url}/bare", {}, post_script),
            }
            for server, src in sources.items():
                process, url, key = start_runbase(Path(scratch) / server, src)
                processes.append(process)
                auth = {"Authorization": f"Bearer {key}"}
                run_id = httpx.post(url + "/api/v1/runs", json=BODY, headers=auth).json()["id"]
                targets[("GET", server)] = (f"{url}/api/v1/runs/{run_id}", auth, None)
                targets[("POST", server)] = (f"{url}/api/v1/runs", auth, post_script)
            medians = interleaved_medians(
                {
                    case: functools.partial(
                        run_wrk,
                        url,
                        connections=args.connections,
                        seconds=args.seconds,
                        headers=headers,
                        script=script,
                    )
                    for case, (url, headers, script) in sorted(targets.items())
                },
                args.rounds,
            )
        finally:
            for process in processes:
                process.terminate()
                process.wait(timeout=10)

    results = {f"{method} {server}": value for (method, server), value in medians.items()}
    for method in ("GET", "POST"):
        for server in sources:
            ratio = results[f"{method} {server}"]["rps"] / results[f"{method} bare"]["rps"]
            results[f"{method} {server} ratio"] = {"rps": ratio}
    if args.json:
        print(json.dumps(results, indent=2))
        return
    command = f"python benchmarks/api.py --connections {args.connections} "
    command += f"--seconds {args.seconds} --rounds {args.rounds}"
    if args.baseline_src is not None:
        command += f" --baseline-src {args.baseline_src}"
    print(f"`{command}`\n")
    print("| endpoint | requests/s (median) | p50 ms | p99 ms | / bare |")
    print("|---|---|---|---|---|")
    for method in ("GET", "POST"):
        for server in ("bare", *sources):
            r = results[f"{method} {server}"]
            ratio = results.get(f"{method} {server} ratio", {"rps": 1.0})["rps"]
            print(
                f"| {method} {server} | {r['rps']:.0f} | {r['p50_ms']:.1f} | "
                f"{r['p99_ms']:.1f} | {ratio:.2f}x |"
            )


if __name__ == "__main__":
    main()
