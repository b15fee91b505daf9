"""`Cancel-After` on create, over real HTTP: deadlines in the queue and while processing."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from runbase.parsing import cancel_after_ms
from support import SEEDANCE, LiveServer

BODY = {"model": SEEDANCE, "input": {"prompt": "A lamp", "resolution": "480p"}}


def account_of(server: LiveServer, run_id: str) -> str:
    return next(run.account_id for run in server.admin.runs() if run.id == run_id)


def test_a_queued_run_past_its_deadline_is_canceled_and_refunded(
    start_server: Callable[..., LiveServer],
) -> None:
    server = start_server(workers=0, lease_seconds=1.0)
    key = server.new_key(balance_usd=1.0)
    with server.client(key) as client:
        run = client.post("/api/v1/runs", json=BODY, headers={"Cancel-After": "1s"}).json()
        kept = client.post("/api/v1/runs", json=BODY, headers={"Cancel-After": "10m"}).json()
    ended = server.wait_for_run(key, run["id"], timeout=10, until=("canceled",))
    assert ended["error"]["code"] == "canceled"
    assert "Cancel-After" in ended["error"]["message"]
    with server.client(key) as client:
        assert client.get(f"/api/v1/runs/{kept['id']}").json()["status"] == "pending"
    account = account_of(server, run["id"])
    assert server.admin.balance(account) == 1_000_000 - kept["costUsd"]
    server.admin.check_books(account)


def test_a_processing_run_past_its_deadline_is_stopped(
    start_server: Callable[..., LiveServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNBASE_TEST_ENGINE_SECONDS", "20")
    server = start_server(engines=["engine_fixtures:SlowEngine"])
    key = server.new_key(balance_usd=1.0)
    started = time.monotonic()
    with server.client(key) as client:
        run = client.post("/api/v1/runs", json=BODY, headers={"Cancel-After": "3s"}).json()
    ended = server.wait_for_run(key, run["id"], timeout=20, until=("canceled", "succeeded"))
    assert ended["status"] == "canceled"
    assert ended["startedAt"] is not None
    assert "Cancel-After" in ended["error"]["message"]
    assert time.monotonic() - started < 12
    server.admin.check_books(account_of(server, run["id"]))


def test_a_run_that_finishes_in_time_is_not_touched(
    start_server: Callable[..., LiveServer],
) -> None:
    server = start_server()
    key = server.new_key()
    with server.client(key) as client:
        run = client.post("/api/v1/runs", json=BODY, headers={"Cancel-After": "10m"}).json()
        for bad in ("soon", "0s", "25h", "-5s", "10 m", ""):
            answer = client.post("/api/v1/runs", json=BODY, headers={"Cancel-After": bad})
            assert answer.status_code == 400, bad
            assert answer.json()["error"]["code"] == "invalid_request"
    assert server.wait_for_run(key, run["id"])["status"] == "succeeded"


@pytest.mark.parametrize(
    ("header", "ms"),
    [("90s", 90_000), ("10m", 600_000), ("1h30m", 5_400_000), ("1500ms", 1500), ("2", 2000)],
)
def test_cancel_after_durations(header: str, ms: int) -> None:
    assert cancel_after_ms(header) == ms
