"""On PostgreSQL, a run created by one process wakes the idle workers of another at once
(LISTEN/NOTIFY), whatever their poll interval: an API-only server beside `runbase worker`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest

import support
from support import SEEDANCE, LiveServer, database_env

TESTS_DIR = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(
    support.TEST_DATABASE_URL is None, reason="LISTEN/NOTIFY is PostgreSQL's"
)


def test_a_run_created_elsewhere_wakes_a_worker_process(
    start_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    server = start_server(workers=0)
    data_dir = server.settings.data_dir
    env = {
        **os.environ,
        **database_env(data_dir),
        "PYTHONPATH": os.pathsep.join([os.environ["PYTHONPATH"], str(TESTS_DIR)]),
        "RUNBASE_ENGINES": "engine_fixtures:QuickEngine",
        "RUNBASE_POLL_INTERVAL_SECONDS": "30",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "runbase", "worker", "--data-dir", str(data_dir)],
        env=env,
        start_new_session=True,
    )
    try:
        time.sleep(3.0)  # started, claimed nothing, now waiting for 30 s
        key = server.new_key()
        body = {"model": SEEDANCE, "input": {"prompt": "a field", "resolution": "480p"}}
        with server.client(key) as client:
            run_id = client.post("/api/v1/runs", json=body).json()["id"]
        run = server.wait_for_run(key, run_id, timeout=25)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(timeout=10)
    assert run["status"] == "succeeded", run
    waited = datetime.fromisoformat(run["startedAt"]) - datetime.fromisoformat(run["createdAt"])
    assert waited.total_seconds() < 5  # not the 30 s poll interval
