"""`Idempotency-Key` on create, over real HTTP: replays, conflicts, the race, expiry."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import update

from runbase.core import billing
from runbase.storage.db import Database
from runbase.storage.tables import IdempotencyKeyRow
from support import SEEDANCE, LiveServer

BODY = {"model": SEEDANCE, "input": {"prompt": "A lamp", "resolution": "480p"}}


@pytest.fixture
def server(start_server: Callable[..., LiveServer]) -> LiveServer:
    return start_server(workers=0, rate_limit="1000/second")


def account_of(server: LiveServer, run_id: str) -> str:
    return next(run.account_id for run in server.admin.runs() if run.id == run_id)


def test_same_key_and_body_replays_the_first_run(server: LiveServer) -> None:
    key = server.new_key()
    with server.client(key) as client:
        first = client.post("/api/v1/runs", json=BODY, headers={"Idempotency-Key": "order-1"})
        assert first.status_code == 200
        assert "Idempotent-Replayed" not in first.headers
        # Same JSON, other key order and spacing: still the same request.
        reordered = json.dumps(
            {"input": {"resolution": "480p", "prompt": "A lamp"}, "model": SEEDANCE}, indent=3
        )
        again = client.post(
            "/v1/runs",
            content=reordered,
            headers={"Idempotency-Key": "order-1", "Content-Type": "application/json"},
        )
        assert again.status_code == 200
        assert again.headers["Idempotent-Replayed"] == "true"
        assert again.json()["id"] == first.json()["id"]
        other = client.post("/api/v1/runs", json=BODY, headers={"Idempotency-Key": "order-2"})
        assert other.json()["id"] != first.json()["id"]
        plain = client.post("/api/v1/runs", json=BODY)
        assert plain.json()["id"] not in (first.json()["id"], other.json()["id"])
    assert len(server.admin.runs()) == 3
    server.admin.check_books(account_of(server, first.json()["id"]))


def test_same_key_with_another_body_is_409(server: LiveServer) -> None:
    with server.client(server.new_key()) as client:
        headers = {"Idempotency-Key": "k"}
        assert client.post("/api/v1/runs", json=BODY, headers=headers).status_code == 200
        changed = {**BODY, "input": {**BODY["input"], "duration": "8"}}  # type: ignore[dict-item]
        answer = client.post("/api/v1/runs", json=changed, headers=headers)
        assert answer.status_code == 409
        assert answer.json()["error"]["code"] == "idempotency_key_reused"
        deadline = client.post(
            "/api/v1/runs", json=BODY, headers={**headers, "Cancel-After": "10m"}
        )
        assert deadline.json()["error"]["code"] == "idempotency_key_reused"
        too_long = client.post("/api/v1/runs", json=BODY, headers={"Idempotency-Key": "x" * 256})
        assert too_long.status_code == 400
        assert too_long.json()["error"]["code"] == "invalid_request"
    assert len(server.admin.runs()) == 1


def test_keys_belong_to_one_account(server: LiveServer) -> None:
    headers = {"Idempotency-Key": "shared"}
    with server.client(server.new_key()) as one, server.client(server.new_key()) as two:
        first = one.post("/api/v1/runs", json=BODY, headers=headers).json()
        second = two.post("/api/v1/runs", json=BODY, headers=headers).json()
    assert first["id"] != second["id"]


def test_twenty_concurrent_creates_with_one_key_make_one_run_and_one_charge(
    server: LiveServer,
) -> None:
    key = server.new_key(balance_usd=1.0)
    barrier = threading.Barrier(20)
    answers: list[Any] = []
    lock = threading.Lock()

    def create() -> None:
        with server.client(key) as client:
            barrier.wait()
            answer = client.post("/api/v1/runs", json=BODY, headers={"Idempotency-Key": "race"})
            with lock:
                answers.append(answer)

    threads = [threading.Thread(target=create) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ok = [answer for answer in answers if answer.status_code == 200]
    others = [answer for answer in answers if answer.status_code != 200]
    # A duplicate either replays the run or, at worst, is told the key is in use.
    assert all(a.json()["error"]["code"] == "idempotency_key_in_use" for a in others)
    assert len({answer.json()["id"] for answer in ok}) == 1
    assert sum("Idempotent-Replayed" not in answer.headers for answer in ok) == 1
    [run] = server.admin.runs()
    account = run.account_id
    charges = [entry for entry in server.admin.ledger(account) if entry.kind == "charge"]
    assert len(charges) == 1
    assert server.admin.balance(account) == 1_000_000 - run.cost_micros
    server.admin.check_books(account)


def test_a_refused_create_leaves_the_key_free(server: LiveServer) -> None:
    poor = server.admin.create_account("poor", 0.0)
    key = server.admin.create_key(poor)
    headers = {"Idempotency-Key": "retry-me"}
    with server.client(key) as client:
        refused = client.post("/api/v1/runs", json=BODY, headers=headers)
        assert refused.json()["error"]["code"] == "insufficient_balance"
        database = Database(server.settings.resolved_database_url)
        with database.transaction() as connection:
            billing.add_credits(connection, account_id=poor, amount_micros=1_000_000)
        database.dispose()
        created = client.post("/api/v1/runs", json=BODY, headers=headers)
        assert created.status_code == 200 and "Idempotent-Replayed" not in created.headers
    server.admin.check_books(poor)


def test_keys_expire_after_24_hours(server: LiveServer) -> None:
    headers = {"Idempotency-Key": "daily"}
    with server.client(server.new_key()) as client:
        first = client.post("/api/v1/runs", json=BODY, headers=headers).json()
        database = Database(server.settings.resolved_database_url)
        with database.transaction() as connection:
            connection.execute(
                update(IdempotencyKeyRow.__table__).values(
                    created_ms=IdempotencyKeyRow.created_ms - 25 * 3600 * 1000
                )
            )
        database.dispose()
        changed = {**BODY, "input": {**BODY["input"], "duration": "8"}}  # type: ignore[dict-item]
        later = client.post("/api/v1/runs", json=changed, headers=headers)
    assert later.status_code == 200
    assert later.json()["id"] != first["id"]
