"""How long a new run waits for an idle worker: `startedAt - createdAt` (the claim).

Starts one `runbase serve` (SQLite, one worker) and creates runs one at a time, each after
the previous one has finished, so that the worker is always idle when a run arrives.
Reports median, p99 and max over `--runs` runs. The claim does not depend on the engine,
so the fixture engine that answers at once (tests/engine_fixtures.py:QuickEngine) keeps the
benchmark short; `--engine preview` uses the default engine.

    python benchmarks/dispatch.py [--runs 50] [--engine quick|preview] [--src PATH]

`--src` runs the server from another checkout's `src/` (before/after comparisons).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx
from api import free_port, wait_for

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--engine", choices=["quick", "preview"], default="quick")
    parser.add_argument("--src", type=Path, default=ROOT / "src")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    data_dir, port = Path(tempfile.mkdtemp(prefix="runbase-dispatch-bench.")), free_port()
    engine = "engine_fixtures:QuickEngine" if args.engine == "quick" else "preview"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(args.src), str(ROOT / "tests")]),
        "RUNBASE_ENGINES": engine,
        "RUNBASE_ACCESS_LOG": "false",
        "RUNBASE_RATE_LIMIT": "1000/second",
        "RUNBASE_STARTING_BALANCE_USD": "1000",
    }
    command = [sys.executable, "-m", "runbase", "serve", "--port", str(port)]
    server = subprocess.Popen(
        [*command, "--data-dir", str(data_dir)], env=env, stdout=subprocess.PIPE, text=True
    )
    waits = []
    try:
        assert server.stdout is not None
        key = ""
        for line in server.stdout:
            key = key or next(iter(re.findall(r"sk-[A-Za-z0-9_-]+", line)), "")
            if "serving on" in line:
                break
        base = f"http://127.0.0.1:{port}"
        wait_for(base + "/healthz")
        body = {"model": "bytedance/seedance-1.5-pro", "input": {"prompt": "a quiet pond"}}
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=base, headers=headers, timeout=120) as client:
            for _ in range(args.runs + 1):  # the first starts the engine: not counted
                run = client.post("/api/v1/runs", json=body).json()
                assert "status" in run, run
                while run["status"] not in ("succeeded", "failed"):
                    time.sleep(0.05)
                    run = client.get(f"/api/v1/runs/{run['id']}").json()
                    assert "status" in run, run
                assert run["status"] == "succeeded", run
                waited = datetime.fromisoformat(run["startedAt"]) - datetime.fromisoformat(
                    run["createdAt"]
                )
                waits.append(waited.total_seconds() * 1000)
                time.sleep(0.2)  # the worker is idle, waiting, when the next run comes
    finally:
        server.terminate()
        server.wait(timeout=30)
    waits = sorted(waits[1:])
    result = {
        "runs": len(waits),
        "median_ms": statistics.median(waits),
        "p99_ms": waits[min(len(waits) - 1, int(len(waits) * 0.99))],
        "max_ms": waits[-1],
        "load_average": os.getloadavg(),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(
            f"{args.src}: {result['runs']} runs, create -> claim median "
            f"{result['median_ms']:.0f} ms, p99 {result['p99_ms']:.0f} ms, "
            f"max {result['max_ms']:.0f} ms (load average {result['load_average'][0]:.2f})"
        )


if __name__ == "__main__":
    main()
