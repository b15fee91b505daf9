"""`POST /api/v1/runs/estimate` and `GET /api/v1/account` over real HTTP."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from support import SEEDANCE, LiveServer


@pytest.fixture
def server(start_server: Callable[..., LiveServer]) -> LiveServer:
    return start_server(workers=0)


def body(**input_: Any) -> dict[str, Any]:
    return {"model": SEEDANCE, "input": {"prompt": "A lamp", **input_}}


@pytest.mark.parametrize(
    "input_",
    [
        {},
        {"duration": 8},
        {"resolution": "1080p", "aspect_ratio": "21:9", "duration": "12"},
        {"resolution": "480p", "generate_audio": False},
        {"image_urls": ["https://example.com/a.png"], "resolution": "480p"},
    ],
)
def test_estimate_is_what_create_charges_and_charges_nothing(
    server: LiveServer, input_: dict[str, Any]
) -> None:
    key = server.new_key()
    with server.client(key) as client:
        before = client.get("/api/v1/account").json()["account"]
        estimate = client.post("/api/v1/runs/estimate", json=body(**input_))
        assert estimate.status_code == 200, estimate.text
        assert client.get("/api/v1/account").json()["account"] == before
        assert server.admin.runs() == []
        created = client.post("/api/v1/runs", json=body(**input_)).json()
    assert estimate.json()["costUsd"] == created["costUsd"]
    assert estimate.json()["input"] == created["input"]
    assert estimate.json()["model"] == SEEDANCE


def test_estimate_refuses_what_create_refuses(server: LiveServer) -> None:
    with server.client(server.new_key()) as client:
        bad = client.post("/api/v1/runs/estimate", json=body(duration="5"))
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_input"
        missing = client.post("/api/v1/runs/estimate", json={"model": "acme/x", "input": {}})
        assert missing.json()["error"]["code"] == "model_not_found"
    with server.client() as anonymous:
        answer = anonymous.post("/api/v1/runs/estimate", json=body())
        assert answer.status_code == 401 and answer.json()["error"]["code"] == "missing_api_key"
    # A poor account can still ask: estimates are never refused for money.
    with server.client(server.new_key(balance_usd=0.0)) as client:
        assert client.post("/v1/runs/estimate", json=body()).json()["costUsd"] == 207_360


def test_account_shows_balance_and_the_keys_spend(server: LiveServer) -> None:
    owner = server.admin.create_account("acme", 2.0)
    key = server.admin.create_key(owner, name="prod", spend_limit_cents=500, daily_run_quota=9)
    with server.client(key) as client:
        first = client.get("/api/v1/account")
        assert first.status_code == 200
        assert first.headers["X-RateLimit-Limit"] == "20"
        run = client.post("/api/v1/runs", json=body()).json()
        after = client.get("/api/v1/account").json()
    assert first.json()["account"] == {
        "id": owner,
        "name": "acme",
        "balanceUsd": 2_000_000,
        "testBalanceUsd": 0,
    }
    assert after["account"]["balanceUsd"] == 2_000_000 - run["costUsd"]
    assert after["key"]["spentUsd"] == run["costUsd"]
    assert after["key"]["name"] == "prod"
    assert after["key"]["isTest"] is False
    assert key.startswith(after["key"]["prefix"])
    assert (after["key"]["spendLimitCents"], after["key"]["dailyRunQuota"]) == (500, 9)
    assert after["key"]["runsLast24h"] == 1
    assert after["key"]["rateLimit"] == "20/10seconds"
    server.admin.check_books(owner)
