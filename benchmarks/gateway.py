"""runbase as a gateway: many runs in flight at a provider that takes its time.

One `runbase serve` (RUNBASE_ENGINES=ark, SQLite) forwards runs to a fake ModelArk
(tests/fakes/modelark.py, in a process of its own) whose every task takes `--seconds`
(queued a sixth of it, then running). Each round creates `--runs` runs at once and waits
until all are terminal (runbase's wall: from the first create to the last run's
`completedAt`; the client polls each run every 2 s meanwhile); beside it, in the same
invocation and rounds interleaved, a bare asyncio client (a process of its own, on the same
HTTP client as runbase's providers) submits the same number of tasks straight to the same
fake, polls them on the same schedule and downloads every video: the floor for a gateway's
own work (its wall is the process's whole life). Reported per side: median wall time over
the rounds against the ideal (the fake's task time), peak RSS of the process tree, CPU
seconds per run (user + system, the server's whole process tree).

    python benchmarks/gateway.py [--runs 1000] [--seconds 30] [--rounds 3] [--poll 1]
                                 [--max-poll 3] [--callbacks] [--src PATH] [--json]

runbase polls upstream every `--poll` seconds, growing 1.5x to `--max-poll` (its
defaults are 2 and 10 s, set for real tasks of minutes); the bare client polls on the
same schedule. The fake has no 120-task limit, so RUNBASE_ARK_MAX_IN_FLIGHT = --runs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from api import free_port, wait_for  # noqa: E402

from runbase.providers.http_pool import ClientPool  # noqa: E402

ARK_KEY = "bench-ark-key"
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
POLL_RUNBASE_S = float(os.environ.get("BENCH_POLL_RUNBASE_S", "2"))
INPUT = {"prompt": "a lighthouse at dusk", "resolution": "480p", "generate_audio": False}


# ---- measuring a process tree ---------------------------------------------------------


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            tree.setdefault(parent, []).append(int(entry))
    return tree


def tree_of(pid: int) -> list[int]:
    tree, found, todo = _children(), [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(tree.get(current, []))
    return found


def rss_bytes(pid: int) -> int:
    total = 0
    for member in tree_of(pid):
        with contextlib.suppress(OSError):  # it exited meanwhile
            total += int(Path(f"/proc/{member}/statm").read_text().split()[1]) * PAGE
    return total


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the tree, exited children included (cutime, cstime)."""
    total = 0
    for member in tree_of(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += sum(int(value) for value in fields[11:15])
    return total / TICKS


class PeakRss:
    """Samples a process tree's RSS every 0.2 s while running."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak = pid, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.peak = max(self.peak, rss_bytes(self.pid))


# ---- the fake provider, and the bare client (each a process of its own) --------------


def serve_fake(port: int, videos: Path, seconds: float) -> None:
    import uvicorn

    from fakes.modelark import FakeModelArk

    fake = FakeModelArk(
        ARK_KEY, videos, queued_seconds=seconds / 6, running_seconds=seconds * 5 / 6
    )
    fake.base_url = f"http://127.0.0.1:{port}"

    def tick() -> None:  # callbacks, for runs that asked for them (--callbacks)
        while True:
            fake.tick()
            time.sleep(0.02)

    threading.Thread(target=tick, daemon=True).start()
    uvicorn.run(fake.app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


async def bare_client(base: str, runs: int, poll: float, max_poll: float, out: Path) -> None:
    """Submit, poll and download `runs` tasks, as a minimal gateway would."""
    headers = {"Authorization": f"Bearer {ARK_KEY}"}
    body = {
        "model": "seedance-1-5-pro-251215",
        "content": [{"type": "text", "text": INPUT["prompt"]}],
        "resolution": "480p",
        "ratio": "16:9",
        "duration": 4,
        "generate_audio": False,
        "seed": 1,
        "camera_fixed": False,
        "watermark": False,
    }
    tasks = "/api/v3/contents/generations/tasks"
    # The same transport as runbase's provider; videos through clients that never see the key.
    api = ClientPool(base_url=base, headers=headers, timeout=60)
    storage = ClientPool(base_url=base, headers={}, timeout=60)
    try:

        async def one(index: int) -> None:
            task_id = (await api.request("POST", tasks, json=body)).json()["id"]
            interval, due = poll, time.monotonic()
            while True:  # runbase's schedule, counted from the submit (and one poll at once)
                task = (await api.request("GET", f"{tasks}/{task_id}")).json()
                if task["status"] == "succeeded":
                    break
                assert task["status"] in ("queued", "running"), task
                due = max(due + interval, time.monotonic())
                await asyncio.sleep(due - time.monotonic())
                interval = min(interval * 1.5, max_poll)
            video = await storage.request("GET", task["content"]["video_url"])
            (out / f"{index}.mp4").write_bytes(video.content)

        await asyncio.gather(*(one(i) for i in range(runs)))
    finally:
        await api.aclose()
        await storage.aclose()


# ---- rounds ----------------------------------------------------------------------------


def measured(pid: int, work: Callable[[], float]) -> dict[str, float]:
    """Run `work` (it answers the wall time it measured) while watching process `pid`."""
    cpu_before = cpu_seconds(pid)
    with PeakRss(pid) as peak:
        wall = work()
    return {"wall_s": wall, "cpu_s": cpu_seconds(pid) - cpu_before, "peak_rss": peak.peak}


async def drive_runbase(base: str, key: str, runs: int) -> float:
    """Create `runs` runs at once, then poll each every 2 s until all are terminal; answers
    the wall time from the first create until the last run's `completedAt` (the server's
    record, so that the client's poll interval does not count)."""
    started = time.time()
    api = ClientPool(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=60)
    try:
        body = {"model": "bytedance/seedance-1.5-pro", "input": INPUT}
        created = await asyncio.gather(
            *(api.request("POST", "/api/v1/runs", json=body) for _ in range(runs))
        )
        ids = [response.json()["id"] for response in created]
        stale: list[str] = []
        completed: list[float] = []

        async def wait(run_id: str) -> str:
            while True:
                try:
                    run = (await api.request("GET", f"/api/v1/runs/{run_id}")).json()
                except httpx.TransportError:  # a keep-alive connection closed under it
                    stale.append(run_id)
                    continue
                if run["status"] in ("succeeded", "failed", "canceled"):
                    completed.append(datetime.fromisoformat(run["completedAt"]).timestamp())
                    return str(run["status"])
                await asyncio.sleep(POLL_RUNBASE_S)

        statuses = await asyncio.gather(*(wait(run_id) for run_id in ids))
    finally:
        await api.aclose()
    if stale:
        print(f"{len(stale)} polls of runbase retried after a transport error")
    failed = [s for s in statuses if s != "succeeded"]
    assert not failed, f"{len(failed)} runs did not succeed: {set(failed)}"
    return max(completed) - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--poll", type=float, default=1.0)
    parser.add_argument("--max-poll", type=float, default=3.0)
    parser.add_argument(
        "--callbacks",
        action="store_true",
        help="give runbase a public URL, so that the fake calls back (polling goes on)",
    )
    parser.add_argument(
        "--src", type=Path, default=ROOT / "src", help="run the server from this checkout's src/"
    )
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--role", choices=["fake", "bare"], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--dir", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "fake":
        serve_fake(args.port, args.dir, args.seconds)
        return
    if args.role == "bare":
        base = f"http://127.0.0.1:{args.port}"
        asyncio.run(bare_client(base, args.runs, args.poll, args.max_poll, args.dir))
        return

    work = Path(tempfile.mkdtemp(prefix="runbase-gateway-bench."))
    fake_port, server_port = free_port(), free_port()
    this = [sys.executable, __file__, "--seconds", str(args.seconds)]
    fake = subprocess.Popen(
        [*this, "--role", "fake", "--port", str(fake_port), "--dir", str(work / "videos")]
    )
    env = {
        **os.environ,
        "PYTHONPATH": str(args.src),
        "RUNBASE_ENGINES": "ark",
        "RUNBASE_ARK_API_KEY": ARK_KEY,
        "RUNBASE_ARK_BASE_URL": f"http://127.0.0.1:{fake_port}/api/v3",
        "RUNBASE_ARK_ALLOW_PRIVATE_HOSTS": "true",
        "RUNBASE_ARK_MAX_IN_FLIGHT": str(args.runs),
        "RUNBASE_ARK_POLL_INTERVAL_SECONDS": str(args.poll),
        "RUNBASE_ARK_MAX_POLL_INTERVAL_SECONDS": str(args.max_poll),
        "RUNBASE_ACCESS_LOG": "false",
        "RUNBASE_RATE_LIMIT": "1000000/second",
        "RUNBASE_STARTING_BALANCE_USD": "1000000",
    }
    if args.callbacks:
        env["RUNBASE_PUBLIC_URL"] = f"http://127.0.0.1:{server_port}"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "runbase",
            "serve",
            "--port",
            str(server_port),
            "--data-dir",
            str(work / "data"),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=(work / "server.log").open("w"),  # kept: read it when a round fails
        text=True,
    )
    try:
        assert server.stdout is not None
        key = ""
        for line in server.stdout:
            key = key or next(iter(re.findall(r"sk-[A-Za-z0-9_-]+", line)), "")
            if "serving on" in line:
                break
        wait_for(f"http://127.0.0.1:{server_port}/healthz")
        wait_for(f"http://127.0.0.1:{fake_port}/videos/none.mp4")
        load = os.getloadavg()
        rounds: dict[str, list[dict[str, float]]] = {"runbase": [], "bare client": []}
        base = f"http://127.0.0.1:{server_port}"
        for number in range(args.rounds):
            runbase = measured(server.pid, lambda: asyncio.run(drive_runbase(base, key, args.runs)))
            rounds["runbase"].append(runbase)
            out = work / f"bare-{number}"
            out.mkdir()
            bare_command = [*this, "--role", "bare", "--port", str(fake_port), "--dir", str(out)]
            bare_command += [
                "--runs",
                str(args.runs),
                "--poll",
                str(args.poll),
                "--max-poll",
                str(args.max_poll),
            ]
            rounds["bare client"].append(measure_process(bare_command))
    finally:
        server.terminate()
        fake.terminate()
        server.wait(timeout=30)
        fake.wait(timeout=30)
    report(rounds, args, load)


def measure_process(command: list[str]) -> dict[str, float]:
    """Run a one-process command to its end: wall, CPU and peak RSS from the kernel."""
    started = time.monotonic()
    process = subprocess.Popen(command)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError("the bare client failed")
    return {
        "wall_s": time.monotonic() - started,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "peak_rss": usage.ru_maxrss * 1024,
    }


def report(
    rounds: dict[str, list[dict[str, float]]], args: argparse.Namespace, load: tuple[float, ...]
) -> None:
    summary = {}
    for side, results in rounds.items():
        wall = statistics.median(r["wall_s"] for r in results)
        summary[side] = {
            "wall_s": round(wall, 1),
            "wall_vs_ideal": round(wall / args.seconds, 2),
            "peak_rss_mb": round(max(r["peak_rss"] for r in results) / 2**20),
            "cpu_ms_per_run": round(
                statistics.median(r["cpu_s"] for r in results) / args.runs * 1000, 1
            ),
            "rounds_wall_s": [round(r["wall_s"], 1) for r in results],
        }
    if args.json:
        print(json.dumps({"load_before": load, **summary}, indent=2))
        return
    print(
        f"{args.runs} runs of {args.seconds:g} s, {args.rounds} rounds, polls every "
        f"{args.poll:g} s growing to {args.max_poll:g} s"
        f"{', callbacks to runbase' if args.callbacks else ''}; load average before: "
        f"{load[0]:.2f} {load[1]:.2f} {load[2]:.2f}"
    )
    print("| side | wall s (median) | x ideal | peak RSS MB | CPU ms/run | rounds |")
    print("|---|---|---|---|---|---|")
    for side, row in summary.items():
        print(
            f"| {side} | {row['wall_s']} | {row['wall_vs_ideal']} | {row['peak_rss_mb']} | "
            f"{row['cpu_ms_per_run']} | {row['rounds_wall_s']} |"
        )


if __name__ == "__main__":
    main()
