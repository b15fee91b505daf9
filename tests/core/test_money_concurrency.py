"""Concurrent creates can never overdraw a balance, a key's spend limit or its quota."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable

import httpx
import pytest

from support import SEEDANCE, LiveServer

COST = 207_360  # 720p 16:9 4 s with audio
CONCURRENT = 200


async def create_many(server: LiveServer, key: str, count: int) -> Counter[int]:
    limits = httpx.Limits(max_connections=count)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(
        base_url=server.base_url, headers=headers, limits=limits, timeout=60
    ) as client:
        body = {"model": SEEDANCE, "input": {"prompt": "a race"}}
        responses = await asyncio.gather(
            *(client.post("/api/v1/runs", json=body) for _ in range(count))
        )
    return Counter(response.status_code for response in responses)


@pytest.fixture
def server(start_server: Callable[..., LiveServer]) -> LiveServer:
    return start_server(workers=0)


def test_balance_covers_exactly_the_affordable_runs(server: LiveServer) -> None:
    affordable = 37
    account = server.admin.create_account(
        "racer", balance_usd=(affordable * COST + COST // 2) / 1e6
    )
    key = server.admin.create_key(account, rate_limit="1000/second")
    statuses = asyncio.run(create_many(server, key, CONCURRENT))
    assert statuses == {200: affordable, 402: CONCURRENT - affordable}
    assert server.admin.balance(account) == COST // 2
    server.admin.check_books(account)


def test_spend_limit_covers_exactly_the_allowed_runs(server: LiveServer) -> None:
    allowed = 23
    account = server.admin.create_account("spender", balance_usd=1000)
    limit_cents = (allowed * COST + COST // 2) // 10_000
    key = server.admin.create_key(account, spend_limit_cents=limit_cents, rate_limit="1000/second")
    statuses = asyncio.run(create_many(server, key, CONCURRENT))
    assert statuses == {200: allowed, 403: CONCURRENT - allowed}
    server.admin.check_books(account)


def test_daily_quota_holds_under_concurrency(server: LiveServer) -> None:
    account = server.admin.create_account("quota", balance_usd=1000)
    key = server.admin.create_key(account, daily_run_quota=11, rate_limit="1000/second")
    statuses = asyncio.run(create_many(server, key, 60))
    assert statuses == {200: 11, 429: 49}
    server.admin.check_books(account)
