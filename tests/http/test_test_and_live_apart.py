"""Test and live apart, as in Stripe, over real HTTP on every surface: one account's test
key (`sk-test-`) sees, lists, waits on, streams and cancels only test runs, its live key
only live runs. Another mode's run is reported as missing, never forbidden, and nothing is
canceled, deleted or charged across modes.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import httpx
import pytest
from envelopes import refused

from support import SEEDANCE, LiveServer

FAST = "100000/second"
BODY = {"model": SEEDANCE, "input": {"prompt": "A lamp", "resolution": "480p"}}
TASKS = "/api/v3/contents/generations/tasks"


@dataclass
class Modes:
    server: LiveServer
    account: str
    live: httpx.Client
    test: httpx.Client


@pytest.fixture
def modes(start_server: Callable[..., LiveServer]) -> Modes:
    server = start_server(workers=0)
    account = server.admin.create_account("acme", 10.0)
    live = server.client(server.admin.create_key(account, rate_limit=FAST))
    test = server.client(server.admin.create_key(account, is_test=True, rate_limit=FAST))
    return Modes(server, account, live, test)


def _unseen(client: httpx.Client, run_id: str) -> None:
    """Every read and change of `run_id` by `client` answers as if it did not exist."""
    for prefix in ("/api/v1", "/v1"):
        refused(prefix, client.get(f"{prefix}/runs/{run_id}"), 404)
        refused(prefix, client.post(f"{prefix}/runs/{run_id}/cancel"), 404)
        refused(prefix, client.get(f"{prefix}/runs/{run_id}/events"), 404)
    refused("/v1/videos", client.get(f"/v1/videos/{run_id}"), 404)
    refused("/v1/videos", client.get(f"/v1/videos/{run_id}/content"), 404)
    refused("/v1/videos", client.delete(f"/v1/videos/{run_id}"), 404)
    refused("/v1/videos", client.get("/v1/videos", params={"after": run_id}))
    refused(TASKS, client.get(f"{TASKS}/{run_id}"), 404)
    refused(TASKS, client.delete(f"{TASKS}/{run_id}"), 404)
    assert client.get(TASKS, params={"filter.task_ids": run_id}).json()["total"] == 0


def test_each_key_sees_only_its_own_modes_runs(modes: Modes) -> None:
    live_run = modes.live.post("/api/v1/runs", json=BODY).json()
    test_run = modes.test.post("/v1/runs", json=BODY).json()
    _unseen(modes.test, live_run["id"])
    _unseen(modes.live, test_run["id"])
    for client, own in ((modes.live, live_run["id"]), (modes.test, test_run["id"])):
        assert [run["id"] for run in client.get("/api/v1/runs").json()["data"]] == [own]
        assert [video["id"] for video in client.get("/v1/videos").json()["data"]] == [own]
        assert [task["id"] for task in client.get(TASKS).json()["items"]] == [own]
        assert client.get(f"/api/v1/runs/{own}").json()["status"] == "pending"
    # Nothing was canceled or deleted across modes: each owner can still cancel its own.
    for client, own in ((modes.live, live_run["id"]), (modes.test, test_run["id"])):
        assert client.post(f"/api/v1/runs/{own}/cancel").json()["status"] == "canceled"
    modes.server.admin.check_books(modes.account)
    assert modes.server.admin.balance(modes.account) == 10_000_000


def test_idempotency_keys_are_per_mode(modes: Modes) -> None:
    headers = {"Idempotency-Key": "order-1"}
    live_run = modes.live.post("/api/v1/runs", json=BODY, headers=headers)
    test_run = modes.test.post("/api/v1/runs", json=BODY, headers=headers)
    assert live_run.status_code == test_run.status_code == 200
    assert live_run.json()["id"] != test_run.json()["id"]  # neither replays the other
    assert "idempotent-replayed" not in test_run.headers
    again = modes.test.post("/api/v1/runs", json=BODY, headers=headers)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == test_run.json()["id"]
    assert len(modes.server.admin.runs()) == 2
    modes.server.admin.check_books(modes.account)


def test_waiting_and_streaming_follow_the_mode(start_server: Callable[..., LiveServer]) -> None:
    server = start_server()  # a worker: runs finish
    account = server.admin.create_account("acme", 10.0)
    live_key = server.admin.create_key(account, rate_limit=FAST)
    test_key = server.admin.create_key(account, is_test=True, rate_limit=FAST)
    with server.client(test_key) as test, server.client(live_key) as live:
        waited = test.post("/api/v1/runs", json=BODY, headers={"Prefer": "wait=30"}).json()
        assert waited["status"] == "succeeded"
        with test.stream("GET", f"/api/v1/runs/{waited['id']}/events") as stream:
            assert "succeeded" in "".join(stream.iter_text())
        refused("/api/v1", live.get(f"/api/v1/runs/{waited['id']}/events"), 404)
        refused("/v1/videos", live.get(f"/v1/videos/{waited['id']}/content"), 404)
        assert test.get(f"/v1/videos/{waited['id']}/content").status_code == 200
    test_entries = [e for e in server.admin.ledger(account) if e.run_id == waited["id"]]
    assert [e.book for e in test_entries] == ["test"]
    server.admin.check_books(account)
