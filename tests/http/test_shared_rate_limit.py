"""Two API servers sharing one Redis enforce one rate limit per key between them."""

from __future__ import annotations

from collections.abc import Callable

from support import LiveServer


def test_two_servers_enforce_one_limit(
    start_server: Callable[..., LiveServer], redis_url: str
) -> None:
    options = {"workers": 0, "rate_limit": "6/minute", "rate_limit_storage_url": redis_url}
    first, second = start_server(**options), start_server(**options)
    key = first.new_key()  # both servers share one database, so the key works on both
    statuses, remaining = [], []
    with first.client(key) as a, second.client(key) as b:
        for client in (a, b, a, b, a, b, a, b):
            response = client.get("/api/v1/runs/run_00000000000000000000000000")
            statuses.append(response.status_code)
            remaining.append(response.headers.get("X-RateLimit-Remaining"))
    assert statuses == [404] * 6 + [429, 429], statuses
    assert remaining[:6] == ["5", "4", "3", "2", "1", "0"], remaining


def test_without_shared_storage_each_server_counts_alone(
    start_server: Callable[..., LiveServer],
) -> None:
    first, second = (
        start_server(workers=0, rate_limit="2/minute"),
        start_server(workers=0, rate_limit="2/minute"),
    )
    key = first.new_key()
    with first.client(key) as a, second.client(key) as b:
        statuses = [
            c.get("/api/v1/runs/run_00000000000000000000000000").status_code
            for c in (a, a, b, b, a)
        ]
    assert statuses == [404, 404, 404, 404, 429]
