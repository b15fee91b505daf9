"""`GET /api/v1/runs` and `POST /api/v1/runs/{id}/cancel` over real HTTP."""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from support import SEEDANCE, LiveServer

BODY = {"model": SEEDANCE, "input": {"prompt": "A lamp", "resolution": "480p"}}


def account_of(server: LiveServer, run_id: str) -> str:
    return next(run.account_id for run in server.admin.runs() if run.id == run_id)


def test_list_pages_newest_first_with_filters(start_server: Callable[..., LiveServer]) -> None:
    server = start_server(workers=0)
    key = server.new_key()
    with server.client(key) as client:
        created = [client.post("/api/v1/runs", json=BODY).json() for _ in range(5)]
        seen: list[dict[str, Any]] = []
        cursor = None
        while True:
            params: dict[str, Any] = {"limit": 2}
            if cursor:
                params["cursor"] = cursor
            page = client.get("/api/v1/runs", params=params).json()
            assert len(page["data"]) <= 2
            seen += page["data"]
            cursor = page["nextCursor"]
            if cursor is None:
                break
        assert [run["id"] for run in seen] == [run["id"] for run in reversed(created)]
        # Reads show the queue: the oldest pending run is next (nothing ahead of it).
        assert [run["queuePosition"] for run in seen] == [4, 3, 2, 1, 0]
        assert len(client.get("/v1/runs", params={"status": "pending"}).json()["data"]) == 5
        assert client.get("/api/v1/runs", params={"status": "succeeded"}).json()["data"] == []
        assert client.get("/api/v1/runs", params={"model": "acme/x"}).json()["data"] == []
        middle = created[2]["createdAt"]
        newer = client.get("/api/v1/runs", params={"created_after": middle}).json()["data"]
        older = client.get("/api/v1/runs", params={"created_before": middle}).json()["data"]
        assert {run["id"] for run in newer} <= {run["id"] for run in created[2:]}
        assert {run["id"] for run in older} <= {run["id"] for run in created[:3]}
        for bad in (
            {"status": "done"},
            {"limit": "0"},
            {"limit": "x"},
            {"cursor": "%%%"},
            {"created_after": "yesterday"},
        ):
            answer = client.get("/api/v1/runs", params=bad)
            assert answer.status_code == 400, bad
            assert answer.json()["error"]["code"] == "invalid_request"
    with server.client(server.new_key()) as stranger:  # another account sees none of them
        assert stranger.get("/api/v1/runs").json() == {"data": [], "nextCursor": None}


def test_cancel_a_pending_run_refunds_exactly_once(
    start_server: Callable[..., LiveServer],
) -> None:
    server = start_server(workers=0)
    key = server.new_key(balance_usd=1.0)
    with server.client(key) as client:
        run = client.post("/api/v1/runs", json=BODY).json()
        account = account_of(server, run["id"])
        assert server.admin.balance(account) == 1_000_000 - run["costUsd"]

        def cancel(_: int) -> Any:
            with server.client(key) as own:
                return own.post(f"/api/v1/runs/{run['id']}/cancel")

        with ThreadPoolExecutor(8) as pool:
            answers = list(pool.map(cancel, range(8)))
        assert {answer.status_code for answer in answers} == {200}
        canceled = answers[0].json()
        assert canceled["status"] == "canceled"
        assert canceled["error"]["code"] == "canceled"
        assert canceled["completedAt"] is not None
        assert client.get(f"/api/v1/runs/{run['id']}").json()["status"] == "canceled"
    assert server.admin.balance(account) == 1_000_000
    refunds = [entry for entry in server.admin.ledger(account) if entry.kind == "refund"]
    assert len(refunds) == 1 and refunds[0].amount_micros == run["costUsd"]
    server.admin.check_books(account)


def test_cancel_a_processing_run_stops_its_engine(
    start_server: Callable[..., LiveServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNBASE_TEST_ENGINE_SECONDS", "20")
    server = start_server(engines=["engine_fixtures:SlowEngine"])
    key = server.new_key(balance_usd=1.0)
    with server.client(key) as client:
        run_id = client.post("/api/v1/runs", json=BODY).json()["id"]
        server.wait_for_run(key, run_id, until=("processing",))
        started = time.monotonic()
        answer = client.post(f"/api/v1/runs/{run_id}/cancel")
        assert answer.status_code == 200, answer.text
        assert time.monotonic() - started < 8
        assert answer.json()["status"] == "canceled"
        assert answer.json()["startedAt"] is not None
        assert answer.json()["backend"] == "slow"
        # The worker is free again: the next run is served.
        next_id = client.post("/api/v1/runs", json=BODY).json()["id"]
        server.wait_for_run(key, next_id, until=("processing",))
    account = account_of(server, run_id)
    server.admin.check_books(account)
    [refund] = [e for e in server.admin.ledger(account) if e.kind == "refund"]
    assert refund.run_id == run_id


def test_an_engine_that_will_not_stop_is_409_then_canceled(
    start_server: Callable[..., LiveServer],
) -> None:
    server = start_server(engines=["engine_fixtures:HangingEngine"], cancel_wait_seconds=1)
    key = server.new_key(balance_usd=1.0)
    with server.client(key) as client:
        run_id = client.post("/api/v1/runs", json=BODY).json()["id"]
        server.wait_for_run(key, run_id, until=("processing",))
        answer = client.post(f"/api/v1/runs/{run_id}/cancel")
        assert answer.status_code == 409
        assert answer.json()["error"]["code"] == "cancel_timeout"
    # The engine is killed after its grace period; the cancel request was kept.
    run = server.wait_for_run(key, run_id, timeout=30, until=("canceled", "failed", "succeeded"))
    assert run["status"] == "canceled"
    server.admin.check_books(account_of(server, run_id))


def test_cancel_a_finished_or_foreign_run(start_server: Callable[..., LiveServer]) -> None:
    server = start_server()
    # wait_for_run polls 10 times a second: past 2 s the default limit (20/10 s) would
    # answer the reads below with 429.
    key = server.new_key(rate_limit="1000/second")
    with server.client(key) as client:
        run_id = client.post("/api/v1/runs", json=BODY).json()["id"]
        server.wait_for_run(key, run_id)
        late = client.post(f"/api/v1/runs/{run_id}/cancel")
        assert late.status_code == 409
        assert late.json()["error"]["code"] == "run_already_finished"
        assert client.get(f"/api/v1/runs/{run_id}").json()["status"] == "succeeded"
    with server.client(server.new_key()) as stranger:
        answer = stranger.post(f"/api/v1/runs/{run_id}/cancel")
        assert answer.status_code == 404 and answer.json()["error"]["code"] == "run_not_found"
    server.admin.check_books(account_of(server, run_id))
