"""Memory of a default `runbase serve`: before its engine starts, once it has, after a run.

Starts `runbase serve` on 127.0.0.1 as a user does (the console script, default settings:
one worker, the preview engine in a spawned child process) and reads the RSS and PSS of
the server's whole process tree from /proc (Linux only) at three points, each on a fresh
server and data directory:

- before: the server up and idle, no engine child yet (it starts with the first run);
- engine started: after a first run that the engine child refuses before rendering (an
  image on a private address), so the child is set up and has taken a task, nothing more;
- after a run: one 720p 4 s run with audio and a spoken line, as a first run (the engine
  child starts inside it); also the peak while it renders, sampled every 50 ms, and the
  run's time from `createdAt` to `completedAt`; then the same run again (the engine
  warm), its time and the tree after it.

PSS divides each shared page among the processes that map it, so the PSS total is what
the tree costs the machine; the RSS total counts shared pages once per process.

With `--compare-with REV` the same rounds run, interleaved, against the `src/` of another
git revision (exported to a temporary directory), for before/after figures side by side.
`--imports` prints instead what each module an engine process may load adds to a fresh
interpreter's RSS, imported one after the other in the order given.

    .venv/bin/python benchmarks/memory.py [--rounds 3] [--compare-with REV] [--json]
    .venv/bin/python benchmarks/memory.py --imports [MODULE ...]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
MODEL = "bytedance/seedance-1.5-pro"
RUN_INPUT = {
    "prompt": (
        "A city street at night under neon signs, the camera slowly zooms in. "
        '"Where are you going?" she asks.'
    ),
    "resolution": "720p",
    "duration": 4,
    "aspect_ratio": "16:9",
    "generate_audio": True,
}
# Refused inside the engine child, before any rendering: private hosts are not fetched.
REFUSED_INPUT = {**RUN_INPUT, "image_urls": ["http://127.0.0.1:9/private.png"]}


def console_script(checkout: Path) -> str:
    """What pip writes for the checkout's `[project.scripts] runbase = "module:function"`.

    The server's __main__ is this file, and a spawned engine process runs it again (as
    __mp_main__): what it imports, the engine process imports too.
    """
    pyproject = tomllib.loads((checkout / "pyproject.toml").read_text())
    module, _, function = pyproject["project"]["scripts"]["runbase"].partition(":")
    return (
        f"import sys\nfrom {module} import {function}\n"
        f"if __name__ == '__main__':\n    sys.exit({function}())\n"
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as children:
            kids = [int(kid) for kid in children.read().split()]
    except FileNotFoundError:
        return []
    return [pid] + [each for kid in kids for each in process_tree(kid)]


def memory_of(pid: int) -> dict[str, float]:
    """RSS and PSS of one process in MB (0 if it has gone)."""
    values = {"rss": 0.0, "pss": 0.0}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as rollup:
            for line in rollup:
                key, _, rest = line.partition(":")
                if key in ("Rss", "Pss"):
                    values[key.lower()] = int(rest.split()[0]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return values


def role_of(pid: int, root: int) -> str:
    if pid == root:
        return "server"
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as cmdline:
            command = cmdline.read().replace(b"\0", b" ").decode(errors="replace")
    except FileNotFoundError:
        return "gone"
    if "spawn_main" in command:
        return "engine"
    if "resource_tracker" in command:
        return "tracker"
    return "other"


def measure(root: int) -> dict[str, float]:
    """Totals of the tree, and each role's RSS and PSS (MB)."""
    result: dict[str, float] = {"rss": 0.0, "pss": 0.0}
    for pid in process_tree(root):
        used = memory_of(pid)
        role = role_of(pid, root)
        for kind, value in used.items():
            result[kind] += value
            result[f"{role}_{kind}"] = result.get(f"{role}_{kind}", 0.0) + value
    return result


@contextmanager
def running_server(checkout: Path, work: Path) -> Iterator[tuple[int, str, str]]:
    """A fresh `runbase serve` of a checkout: (pid, base URL, an API key without rate
    limit)."""
    data_dir = work / f"data-{time.monotonic_ns()}"
    src = checkout / "src"
    env = {**os.environ, "PYTHONPATH": str(src), "RUNBASE_ACCESS_LOG": "false"}
    for name in [name for name in env if name.startswith("RUNBASE_")]:
        if name != "RUNBASE_ACCESS_LOG":
            del env[name]  # the default set-up, whatever this shell has set
    cli = [sys.executable, "-m", "runbase"]
    admin = ["--data-dir", str(data_dir)]
    subprocess.run(
        [*cli, "accounts", "create", "bench", "--balance-usd", "1000", *admin],
        env=env,
        check=True,
        capture_output=True,
    )
    created = subprocess.run(
        [*cli, "keys", "create", "--account", "bench", "--rate-limit", "1000000/second"]
        + ["--json", *admin],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    key = json.loads(created.stdout)["key"]
    script = work / "runbase"
    script.write_text(console_script(checkout))
    port = free_port()
    command = [sys.executable, str(script), "serve", "--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(
        [*command, *admin], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{base_url}/healthz", timeout=1)
                break
            except httpx.TransportError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"runbase serve of {checkout} did not start") from None
                time.sleep(0.1)
        time.sleep(1.0)  # start-up garbage settles; the workers are polling
        yield server.pid, base_url, key
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def make_run(base_url: str, key: str, input_: dict[str, Any], root: int) -> dict[str, Any]:
    """Create a run and poll it to its end, sampling the tree's memory; the run object with
    the peak totals ("peak_rss", "peak_pss") added."""
    peak = {"peak_rss": 0.0, "peak_pss": 0.0}
    with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}) as client:
        created = client.post("/api/v1/runs", json={"model": MODEL, "input": input_}, timeout=30)
        created.raise_for_status()
        run_id = created.json()["id"]
        deadline = time.monotonic() + 300
        while True:
            used = measure(root)
            peak["peak_rss"] = max(peak["peak_rss"], used["rss"])
            peak["peak_pss"] = max(peak["peak_pss"], used["pss"])
            run: dict[str, Any] = client.get(f"/api/v1/runs/{run_id}", timeout=30).json()
            if run["status"] in ("succeeded", "failed", "canceled"):
                return {**run, **peak}
            if time.monotonic() > deadline:
                raise SystemExit(f"run {run_id} did not finish")
            time.sleep(0.05)


def seconds_between(start: str, end: str) -> float:
    parse = datetime.fromisoformat
    return (parse(end.replace("Z", "+00:00")) - parse(start.replace("Z", "+00:00"))).total_seconds()


def one_round(checkout: Path, work: Path) -> dict[str, float]:
    figures: dict[str, float] = {}
    with running_server(checkout, work) as (pid, base_url, key):
        figures.update({f"before_{k}": v for k, v in measure(pid).items()})
        run = make_run(base_url, key, RUN_INPUT, pid)
        if run["status"] != "succeeded":
            raise SystemExit(f"the run did not succeed: {run.get('error')}")
        time.sleep(1.0)
        figures.update({f"after_{k}": v for k, v in measure(pid).items()})
        figures["peak_rss"], figures["peak_pss"] = run["peak_rss"], run["peak_pss"]
        figures["first_run_s"] = seconds_between(run["createdAt"], run["completedAt"])
        again = make_run(base_url, key, RUN_INPUT, pid)
        time.sleep(1.0)
        figures.update({f"again_{k}": v for k, v in measure(pid).items()})
        figures["second_run_s"] = seconds_between(again["createdAt"], again["completedAt"])
    with running_server(checkout, work) as (pid, base_url, key):
        refused = make_run(base_url, key, REFUSED_INPUT, pid)
        if refused["status"] != "failed":
            raise SystemExit(f"the refused run did not fail: {refused['status']}")
        time.sleep(1.0)
        figures.update({f"started_{k}": v for k, v in measure(pid).items()})
    return figures


def export_revision(revision: str, into: Path) -> Path:
    """The revision's src/ and pyproject.toml, in `into`."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision, "src", "pyproject.toml"],
        check=True,
        capture_output=True,
    )
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


ENGINE_IMPORTS = (
    # What the engine process of a default server imports now ...
    "runbase.config",
    "runbase.dispatch.executor",
    "numpy",
    "PIL.Image",
    "runbase.engines.preview",
    "av",
    "runbase.engines.preview.soundtrack",
    # ... and what it imported before as well: the command line, which the old `runbase`
    # script imported (a spawned child runs it again), httpx for images, scipy.
    "runbase.cli",
    "runbase.media.images",
    "scipy.signal",
    "scipy.ndimage",
    "pyloudnorm",
)
IMPORT_PROBE = """
import importlib, sys, time
def rss():
    with open("/proc/self/status") as status:
        return next(int(l.split()[1]) for l in status if l.startswith("VmRSS")) / 1024
before = rss()
for name in sys.argv[1:]:
    start = time.perf_counter()
    importlib.import_module(name)
    now = rss()
    print(f"| {name} | {now - before:.1f} | {(time.perf_counter() - start) * 1000:.0f} |")
    before = now
"""


def print_import_costs(modules: list[str]) -> None:
    print("| module (imported in this order) | RSS added (MB) | import ms |")
    print("|---|---|---|")
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    probe = [sys.executable, "-c", IMPORT_PROBE, *modules]
    print(subprocess.run(probe, env=env, check=True, capture_output=True, text=True).stdout, end="")


ROWS = (
    ("tree RSS before the engine starts", "before_rss"),
    ("tree PSS before the engine starts", "before_pss"),
    ("tree RSS, engine started", "started_rss"),
    ("tree PSS, engine started", "started_pss"),
    ("tree RSS after the run", "after_rss"),
    ("tree PSS after the run", "after_pss"),
    ("  server RSS after the run", "after_server_rss"),
    ("  engine child RSS after the run", "after_engine_rss"),
    ("peak tree RSS during the run", "peak_rss"),
    ("peak tree PSS during the run", "peak_pss"),
    ("tree RSS after a second run", "again_rss"),
    ("first run, createdAt to completedAt (s)", "first_run_s"),
    ("second run, createdAt to completedAt (s)", "second_run_s"),
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--compare-with", metavar="REV", help="a git revision to measure too")
    parser.add_argument("--json", action="store_true", help="print every round as JSON")
    parser.add_argument(
        "--imports", nargs="*", metavar="MODULE", help="print what importing each module costs"
    )
    args = parser.parse_args()
    if args.imports is not None:
        print_import_costs(args.imports or list(ENGINE_IMPORTS))
        return
    if not Path("/proc/self/smaps_rollup").exists():
        raise SystemExit("this benchmark reads /proc/<pid>/smaps_rollup (Linux 4.14 or later)")
    with tempfile.TemporaryDirectory(prefix="runbase-memory-") as tmp:
        work = Path(tmp)
        variants = {"this checkout": ROOT}
        if args.compare_with:
            (work / "baseline").mkdir()
            variants[args.compare_with] = export_revision(args.compare_with, work / "baseline")
        results: dict[str, list[dict[str, float]]] = {name: [] for name in variants}
        names = list(variants)
        for index in range(args.rounds):
            for name in names[index % len(names) :] + names[: index % len(names)]:
                results[name].append(one_round(variants[name], work))
                print(f"round {index + 1}: {name} done", file=sys.stderr)
    if args.json:
        print(json.dumps(results, indent=2))
    header = "| figure (MB unless noted, median of {}) | {} |".format(
        args.rounds, " | ".join(names)
    )
    print(header)
    print("|---" * (len(names) + 1) + "|")
    for label, key in ROWS:
        cells = [statistics.median(r.get(key, 0.0) for r in results[name]) for name in names]
        print(f"| {label} | " + " | ".join(f"{cell:.1f}" for cell in cells) + " |")


if __name__ == "__main__":
    main()
