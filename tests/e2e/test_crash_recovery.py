"""Kill `runbase serve` with SIGKILL mid-work, start it again: nothing is lost or stuck.

Every run reaches a terminal state, every failed run is refunded exactly once, and no run
is charged twice.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from support import SEEDANCE, Admin, database_env, make_settings

TESTS_DIR = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    def __init__(self, data_dir: Path, port: int) -> None:
        env = {
            **os.environ,
            # this checkout first (conftest put its src/ there), then the fixtures
            "PYTHONPATH": os.pathsep.join([os.environ["PYTHONPATH"], str(TESTS_DIR)]),
            "RUNBASE_ENGINES": "engine_fixtures:SlowEngine",
            "RUNBASE_TEST_ENGINE_SECONDS": "2",
            "RUNBASE_WORKERS": "2",
            "RUNBASE_LEASE_SECONDS": "2",
            "RUNBASE_RATE_LIMIT": "1000/10seconds",
            "RUNBASE_POLL_INTERVAL_SECONDS": "0.1",
            **database_env(data_dir),
        }
        command = [sys.executable, "-m", "runbase", "serve", "--port", str(port)]
        command += ["--data-dir", str(data_dir)]
        # A new session so that SIGKILL reaches the engine children too, as in a power cut.
        self.process = subprocess.Popen(
            command,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.base_url = f"http://127.0.0.1:{port}"
        self.output: list[str] = []
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)
            if "serving on" in line:
                break
        self._wait_until_listening()

    def _wait_until_listening(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                httpx.get(self.base_url + "/healthz", timeout=1)
                return
            except httpx.TransportError:
                time.sleep(0.1)
        raise AssertionError("server did not start:\n" + "".join(self.output))

    @property
    def printed_key(self) -> str | None:
        keys = [word for line in self.output for word in line.split() if word.startswith("sk-")]
        return keys[0] if keys else None

    def kill(self) -> None:
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "data"


@pytest.mark.slow
def test_sigkill_and_restart_loses_nothing(data_dir: Path) -> None:
    port = free_port()
    server = ServerProcess(data_dir, port)
    try:
        key = server.printed_key
        assert key is not None, "first start prints the default account's key"
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=10) as client:
            run_ids = []
            for index in range(6):
                body = {"model": SEEDANCE, "input": {"prompt": f"run {index}"}}
                response = client.post("/api/v1/runs", json=body)
                assert response.status_code == 200, response.text
                run_ids.append(response.json()["id"])
            deadline = time.monotonic() + 30
            while True:
                statuses = [client.get(f"/api/v1/runs/{r}").json()["status"] for r in run_ids]
                if statuses.count("processing") == 2:
                    break
                assert time.monotonic() < deadline, statuses
                time.sleep(0.1)
        assert "pending" in statuses
        server.kill()
    finally:
        server.stop()

    server = ServerProcess(data_dir, port)
    try:
        assert server.printed_key is None, "the key is printed only on first start"
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=10) as client:
            deadline = time.monotonic() + 90
            while True:
                runs = [client.get(f"/api/v1/runs/{r}").json() for r in run_ids]
                if all(run["status"] in ("succeeded", "failed") for run in runs):
                    break
                assert time.monotonic() < deadline, [run["status"] for run in runs]
                time.sleep(0.2)
        assert all(run["status"] == "succeeded" for run in runs), runs
    finally:
        server.stop()

    admin = Admin(make_settings(data_dir))
    rows = admin.runs()
    assert sorted(row.id for row in rows) == sorted(run_ids)
    interrupted = [row for row in rows if row.attempts == 2]
    assert len(interrupted) == 2, [(row.id, row.attempts) for row in rows]
    admin.check_books(rows[0].account_id)
