"""A run's log lines are written once, even when a heartbeat is writing them as the run
ends. The heartbeat's write goes on in the database's writer thread when its task is
canceled, so the run's last write must not carry the same lines again."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest

from fakes.modelark import FakeModelArk
from provider_routes import ARK_KEY
from runbase.core import claims, runs
from support import SEEDANCE, LiveServer


def stall(seconds: float) -> None:
    """A slow disk inside a write function, which may not sleep (storage.write_check):
    a wait on a lock that nobody releases, letting other threads run meanwhile."""
    threading.Event().wait(seconds)


def run_once(server: LiveServer, line: str, slowed: list[str]) -> None:
    """One run to its end: it succeeds, the heartbeat carrying `line` was the slowed one,
    and its logs hold `line` once."""
    key = server.new_key()
    with server.client(key) as client:
        body = {"model": SEEDANCE, "input": {"prompt": "a lamp", "resolution": "480p"}}
        run_id = client.post("/api/v1/runs", json=body).json()["id"]

    run = server.wait_for_run(key, run_id)

    assert run["status"] == "succeeded", run
    assert slowed == [run_id]
    assert run["logs"].count(line) == 1, run["logs"]


def test_a_heartbeat_writing_as_the_run_ends_does_not_write_its_lines_twice(
    start_server: Callable[..., LiveServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    real_heartbeat = runs.heartbeat_run
    slowed: list[str] = []

    def slow_heartbeat(connection: Any, run_id: str, **kwargs: Any) -> Any:
        if "early line" in kwargs["update_"].new_logs:
            slowed.append(run_id)
            stall(2.0)  # the engine finishes meanwhile
        return real_heartbeat(connection, run_id, **kwargs)

    monkeypatch.setattr(runs, "heartbeat_run", slow_heartbeat)
    server = start_server(engines=["engine_fixtures:EarlyLogEngine"])
    run_once(server, "early line", slowed)


def test_a_gateway_heartbeat_writing_as_the_run_ends_does_not_write_its_lines_twice(
    start_server: Callable[..., LiveServer],
    start_ark: Callable[..., FakeModelArk],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    fake = start_ark(queued_seconds=0.2, running_seconds=1.2)
    monkeypatch.setenv("RUNBASE_TEST_ARK_B_BASE_URL", fake.base_url + "/api/v3")
    real_renew = claims.renew_leases
    slowed: list[str] = []

    def slow_renew(connection: Any, **kwargs: Any) -> Any:
        for run_id, update_ in kwargs["updates"].items():
            if "poll line" in update_.new_logs:
                slowed.append(run_id)
                stall(2.0)  # the task ends and its video is stored meanwhile
        return real_renew(connection, **kwargs)

    monkeypatch.setattr(claims, "renew_leases", slow_renew)
    server = start_server(
        engines=["provider_fixtures:PollLogArk"],
        ark_api_key=ARK_KEY,
        ark_allow_private_hosts=True,
        ark_poll_interval_seconds=0.3,
        ark_max_poll_interval_seconds=0.3,
    )
    run_once(server, "poll line", slowed)
