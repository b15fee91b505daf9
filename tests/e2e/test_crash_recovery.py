"""Kill `runbase serve` with SIGKILL mid-work, start it again: nothing is lost or stuck.

Every run reaches a terminal state, every failed run is refunded exactly once, and no run
is charged twice.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from server_process import ServerProcess, free_port
from support import SEEDANCE, Admin, make_settings

ENV = {
    "RUNBASE_ENGINES": "engine_fixtures:SlowEngine",
    "RUNBASE_TEST_ENGINE_SECONDS": "2",
    "RUNBASE_WORKERS": "2",
    "RUNBASE_LEASE_SECONDS": "2",
    "RUNBASE_RATE_LIMIT": "1000/10seconds",
    "RUNBASE_POLL_INTERVAL_SECONDS": "0.1",
}


@pytest.fixture
def data_dir(tmp_path: Path) -> Iterator[Path]:
    yield tmp_path / "data"


@pytest.mark.slow
def test_sigkill_and_restart_loses_nothing(data_dir: Path) -> None:
    port = free_port()
    server = ServerProcess(data_dir, port, ENV)
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

    server = ServerProcess(data_dir, port, ENV)
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
