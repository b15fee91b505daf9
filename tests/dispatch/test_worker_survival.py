"""Workers that survive (#13 part 4) and configuration that fails fast (#13 part 5).

- A database fault while claiming is logged with its traceback; the worker backs off and
  goes on. Heartbeats that fail for a while are not fatal: the run still succeeds.
- A supervised loop that dies anyway is restarted and counted.
- `runbase serve` refuses to start when no engine of RUNBASE_ENGINES can start; a compute
  engine that fails at start makes /readyz 503 and creates 503 before any charge.
- A created run wakes an idle worker at once, whatever the poll interval.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy import Connection
from sqlalchemy.exc import OperationalError

from runbase.dispatch.pools import Pools
from runbase.dispatch.wakeup import WorkSignal
from runbase.dispatch.worker import Worker
from runbase.http.provider_metrics import ProviderMetrics
from runbase.storage.db import Database
from runbase.storage.local_blobs import LocalBlobStore
from support import SEEDANCE, Admin, LiveServer, database_env, make_settings

T = TypeVar("T")
BODY = {"model": SEEDANCE, "input": {"prompt": "a quiet street", "resolution": "480p"}}


class FlakyDatabase(Database):
    """A real database whose writes fail while `broken` is set, as when the database
    server restarts or the disk is full (the fault is raised where SQLAlchemy would)."""

    broken = False
    failed_writes = 0

    async def write(self, work: Callable[[Connection], T]) -> T:
        if self.broken:
            self.failed_writes += 1
            raise OperationalError("UPDATE runs ...", {}, Exception("server closed the connection"))
        return await super().write(work)


def create_run(admin: Admin) -> tuple[str, str]:
    """A pending run, created through the API's own transaction (returns run, account)."""
    from runbase.core import creation, keys
    from runbase.core.seedance import validate_input

    account_id = admin.create_account("survivor", 10.0)
    secret = admin.create_key(account_id)
    database = Database(admin.settings.resolved_database_url)
    try:
        with database.transaction() as connection:
            key = keys.find_key(connection, secret)
            assert key is not None
            run = creation.create_run(
                connection,
                key=key,
                model=SEEDANCE,
                validated_input=validate_input(BODY["input"]),  # type: ignore[arg-type]
                cost=1000,
            )
    finally:
        database.dispose()
    return str(run.id), account_id


async def run_until(condition: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)


def run_status(admin: Admin, run_id: str) -> str:
    [row] = [r for r in admin.runs() if r.id == run_id]
    return str(row.status)


async def test_a_worker_survives_database_faults(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(tmp_path, engines=["engine_fixtures:SlowEngine"], lease_seconds=4)
    admin = Admin(settings)
    database = FlakyDatabase(settings.resolved_database_url)
    blobs = LocalBlobStore(settings.outputs_dir, b"k" * 32)
    worker = Worker(database=database, blobs=blobs, settings=settings)
    stopping = asyncio.Event()
    database.broken = True  # the database is down when the worker starts
    task = asyncio.create_task(worker.run_forever(stopping))
    try:
        run_id, account_id = create_run(admin)
        await run_until(lambda: database.failed_writes >= 2, 10)
        database.broken = False
        await run_until(lambda: run_status(admin, run_id) == "processing", 20)
        database.broken = True  # the heartbeats fail for two seconds (the lease is 4)
        await asyncio.sleep(2.0)
        database.broken = False
        await run_until(lambda: run_status(admin, run_id) == "succeeded", 30)
    finally:
        database.broken = False
        stopping.set()
        await task
        database.dispose()
    admin.check_books(account_id)
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR and r.exc_info]
    assert any("processing the next run failed" in r.getMessage() for r in logged)
    assert any("heartbeat of run" in r.getMessage() for r in logged)


async def test_a_loop_that_dies_is_restarted_and_counted(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    Admin(settings)
    database = Database(settings.resolved_database_url)
    registry = CollectorRegistry()
    observer = ProviderMetrics(registry)  # what /metrics shows
    pools = Pools(
        database=database,
        blobs=LocalBlobStore(settings.outputs_dir, b"k" * 32),
        settings=settings,
        work=WorkSignal(),
        observer=observer,
        worker_count=1,
    )
    calls: list[int] = []

    async def dies_once() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise RuntimeError("a bug")

    await pools._supervise("fragile", dies_once)
    assert len(calls) == 2 and pools.restarts == {"fragile": 1}
    assert 'runbase_task_restarts_total{task="fragile"} 1.0' in generate_latest(registry).decode()
    database.dispose()


def test_serve_and_worker_refuse_to_start_when_no_engine_can(tmp_path: Path) -> None:
    for engines, reason in (
        ("ark", "RUNBASE_ARK_API_KEY"),
        ("nonexistent", "unknown engine 'nonexistent'"),
        ("ark,no_such_module:Engine", "cannot be found"),
    ):
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("RUNBASE_ARK")},
            **database_env(tmp_path),
            "RUNBASE_ENGINES": engines,
        }
        for command in (["serve", "--port", "0"], ["worker"]):
            done = subprocess.run(
                [sys.executable, "-m", "runbase", *command, "--data-dir", str(tmp_path)],
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 2, (command, done.stderr)
            assert reason in done.stderr and "Traceback" not in done.stderr


def test_an_engine_that_cannot_start_makes_the_server_unready_and_refuse_creates(
    start_server: Callable[..., LiveServer],
) -> None:
    server = start_server(engines=["engine_fixtures:BrokenSetupEngine"])
    key = server.new_key(balance_usd=1.0)
    with server.client(key) as client:
        first = client.get("/readyz")  # starts the engine to find out
        deadline = time.monotonic() + 30
        while (ready := client.get("/readyz")).status_code == 200:
            assert time.monotonic() < deadline, ready.text
            time.sleep(0.1)
        assert first.status_code == 200
        assert ready.status_code == 503
        assert "weights not found" in ready.json()["checks"]["engines"]
        refused = client.post("/api/v1/runs", json=BODY)
    assert refused.status_code == 503
    assert refused.json()["error"]["code"] == "engine_unavailable"
    assert server.admin.runs() == []  # nothing charged, nothing queued


@pytest.mark.parametrize("engines", [["engine_fixtures:QuickEngine"], ["ark"]])
def test_a_created_run_wakes_an_idle_worker_at_once(
    start_server: Callable[..., LiveServer], engines: list[str], tmp_path: Path
) -> None:
    extra: dict[str, Any] = {}
    if engines == ["ark"]:  # a provider that answers nothing: the claim is what counts
        extra = {"ark_api_key": "k", "ark_base_url": "http://127.0.0.1:9/api/v3"}
    server = start_server(engines=engines, poll_interval_seconds=30.0, **extra)
    key = server.new_key()
    time.sleep(0.5)  # the workers are idle, waiting
    with server.client(key) as client:
        run_id = client.post("/api/v1/runs", json=BODY).json()["id"]
        deadline = time.monotonic() + 10
        while (run := client.get(f"/api/v1/runs/{run_id}").json())["startedAt"] is None:
            assert time.monotonic() < deadline, run
            time.sleep(0.02)
    waited = datetime.fromisoformat(run["startedAt"]) - datetime.fromisoformat(run["createdAt"])
    assert waited.total_seconds() < 5  # the poll interval is 30 s
