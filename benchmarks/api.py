"""Throughput and latency of the runs API next to a bare FastAPI endpoint, in one run.

Starts `runbase serve` (workers off, so only the API is measured) and benchmarks/bare_app.py
as separate uvicorn processes on 127.0.0.1, then drives both with wrk at the same
concurrency, interleaving rounds so that machine noise hits both alike. Reports medians
over rounds and the ratios runbase / bare.

    python benchmarks/api.py [--connections 50] [--seconds 5] [--rounds 3] [--json]
                             [--baseline-src OTHER_CHECKOUT/src]

With `--baseline-src`, a second runbase from that source tree (another branch's checkout)
is measured in the same interleaved rounds, so that a change's effect on the ratios is read
side by side rather than across runs on a noisy machine.

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


def runbase_cli(data_dir: Path, *args: str, env: dict[str, str] | None = None) -> str:
    command = [sys.executable, "-m", "runbase", *args, "--data-dir", str(data_dir)]
    return subprocess.run(command, check=True, capture_output=True, text=True, env=env).stdout


def start_runbase(
    data_dir: Path, src: str | None = None
) -> tuple[subprocess.Popen[bytes], str, str]:
    """`runbase serve` (workers off) on a fresh data directory, from `src` if given; its
    process, URL and an API key."""
    # Without access logs: the benchmark measures the API, not the log.
    env = {**os.environ, "RUNBASE_WORKERS": "0", "RUNBASE_ACCESS_LOG": "false"}
    if src is not None:
        env["PYTHONPATH"] = src
    runbase_cli(data_dir, "accounts", "create", "bench", "--balance-usd", "1000000", env=env)
    created = runbase_cli(
        data_dir,
        *("keys", "create", "--account", "bench", "--rate-limit", "1000000/second", "--json"),
        env=env,
    )
    key = json.loads(created)["key"]
    port = free_port()
    runbase = subprocess.Popen(
        [sys.executable, "-m", "runbase", "serve", "--port", str(port)]
        + ["--data-dir", str(data_dir)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    wait_for(url + "/healthz")
    return runbase, url, key


def start_servers(data_dir: Path) -> tuple[list[subprocess.Popen[bytes]], str, str, str]:
    runbase, runbase_url, key = start_runbase(data_dir)
    bare_port = free_port()
    bare = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "bare_app:app", "--port", str(bare_port)]
        + ["--log-level", "warning", "--no-access-log"],
        cwd=HERE,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    bare_url = f"http://127.0.0.1:{bare_port}"
    wait_for(bare_url + "/bare/x")
    return [runbase, bare], runbase_url, bare_url, key


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
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--baseline-src", help="also measure runbase from this source tree")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is needed: apt-get install wrk")

    with tempfile.TemporaryDirectory() as scratch:
        data_dir = Path(scratch) / "data"
        processes, runbase_url, bare_url, key = start_servers(data_dir)
        runbases = {"runbase": (runbase_url, key)}
        post_script = write_post_script(Path(scratch))
        try:
            if args.baseline_src:
                baseline, url, baseline_key = start_runbase(
                    Path(scratch) / "baseline", args.baseline_src
                )
                processes.append(baseline)
                runbases["baseline"] = (url, baseline_key)
            targets: dict[tuple[str, str], tuple[str, dict[str, str], str | None]] = {}
            for server, (url, server_key) in runbases.items():
                auth = {"Authorization": f"Bearer {server_key}"}
                with httpx.Client(headers=auth) as client:
                    run_id = client.post(url + "/api/v1/runs", json=BODY).json()["id"]
                targets[("GET", server)] = (f"{url}/api/v1/runs/{run_id}", auth, None)
                targets[("POST", server)] = (f"{url}/api/v1/runs", auth, post_script)
                targets.setdefault(("GET", "bare"), (f"{bare_url}/bare/{run_id}", {}, None))
                targets.setdefault(("POST", "bare"), (f"{bare_url}/bare", {}, post_script))
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
                    for case, (url, headers, script) in targets.items()
                },
                args.rounds,
            )
        finally:
            for process in processes:
                process.terminate()
                process.wait(timeout=10)

    results = {f"{method} {server}": value for (method, server), value in medians.items()}
    for method in ("GET", "POST"):
        for server in runbases:
            suffix = "" if server == "runbase" else f" {server}"
            results[f"{method} ratio{suffix}"] = {
                "rps": results[f"{method} {server}"]["rps"] / results[f"{method} bare"]["rps"]
            }
    if args.json:
        print(json.dumps(results, indent=2))
        return
    command = f"python benchmarks/api.py --connections {args.connections} "
    command += f"--seconds {args.seconds} --rounds {args.rounds}"
    if args.baseline_src:
        command += f" --baseline-src {args.baseline_src}"
    print(f"`{command}`\n")
    print("| endpoint | requests/s (median) | p50 ms | p99 ms |")
    print("|---|---|---|---|")
    for method in ("GET", "POST"):
        for server in ("bare", *runbases):
            r = results[f"{method} {server}"]
            name = f"{method} {server}"
            print(f"| {name} | {r['rps']:.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} |")
    print(
        f"\nGET runbase/bare throughput: {results['GET ratio']['rps']:.2f}x; "
        f"POST: {results['POST ratio']['rps']:.2f}x"
    )
    if args.baseline_src:
        print(
            f"baseline/bare, same rounds: GET {results['GET ratio baseline']['rps']:.2f}x; "
            f"POST: {results['POST ratio baseline']['rps']:.2f}x"
        )


if __name__ == "__main__":
    main()
