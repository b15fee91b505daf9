"""What the engine process loads, started as users start runbase: by the `runbase` command.

multiprocessing's spawn runs the parent's main script again in the child; the command's
script is what pip writes for `[project.scripts]` in pyproject.toml, so that is what this
test writes and runs. A text-to-video run then reports which server and heavy modules the
engine process holds (tests/engine_fixtures.py, ImportsEngine): none.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import httpx

from e2e.test_crash_recovery import free_port
from support import SEEDANCE, TESTS_DIR

ROOT = TESTS_DIR.parent


def command_script(directory: Path) -> Path:
    """The `runbase` script pip generates from pyproject.toml's entry point."""
    entry = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]["runbase"]
    module, _, function = entry.partition(":")
    script = directory / "runbase"
    script.write_text(
        f"import sys\nfrom {module} import {function}\n"
        f"if __name__ == '__main__':\n    sys.exit({function}())\n"
    )
    return script


def test_the_engine_process_holds_no_server_modules_and_no_scipy(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), os.environ["PYTHONPATH"]]),
        "RUNBASE_ENGINES": "engine_fixtures:ImportsEngine",
        "RUNBASE_POLL_INTERVAL_SECONDS": "0.05",
        "RUNBASE_ACCESS_LOG": "false",
        "RUNBASE_RATE_LIMIT": "1000/10seconds",  # the test polls
    }
    command = [sys.executable, str(command_script(tmp_path)), "serve", "--port", str(port)]
    command += ["--data-dir", str(tmp_path / "data")]
    server = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        key = next(
            word
            for line in server.stdout
            for word in line.replace("=", " ").split()  # export RUNBASE_API_KEY=sk-...
            if word.startswith("sk-")
        )
        base_url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        with httpx.Client(base_url=base_url, headers={"Authorization": f"Bearer {key}"}) as client:
            while True:
                try:
                    client.get("/healthz", timeout=1)
                    break
                except httpx.TransportError:
                    assert time.monotonic() < deadline, "the server did not start"
                    time.sleep(0.1)
            prompt = 'A harbour at dusk. "Are you coming?" he asks.'
            body = {"model": SEEDANCE, "input": {"prompt": prompt, "resolution": "480p"}}
            run_id = client.post("/api/v1/runs", json=body, timeout=10).json()["id"]
            while (run := client.get(f"/api/v1/runs/{run_id}", timeout=10).json())["status"] in (
                "pending",
                "processing",
            ):
                assert time.monotonic() < deadline + 60, run
                time.sleep(0.2)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert run["status"] == "succeeded", run
    assert "engine process holds: none of them" in run["logs"], run["logs"]
