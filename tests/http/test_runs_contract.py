"""The runs API over real HTTP on 127.0.0.1: every error code, every status, both prefixes."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from support import SEEDANCE, LiveServer

RUN_FIELDS = {
    "id",
    "model",
    "status",
    "input",
    "output",
    "error",
    "costUsd",
    "createdAt",
    "startedAt",
    "completedAt",
    "backend",
    "progress",
    "logs",
}
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def body(**input_: Any) -> dict[str, Any]:
    return {"model": SEEDANCE, "input": {"prompt": "A ceramic lamp on a desk", **input_}}


def assert_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    payload: dict[str, Any] = response.json()
    assert set(payload) == {"error"}
    assert set(payload["error"]) == {"message", "code"}
    assert payload["error"]["code"] == code
    assert payload["error"]["message"]
    return payload


@pytest.fixture
def server(start_server: Callable[..., LiveServer]) -> LiveServer:
    return start_server(workers=0)


def test_missing_and_malformed_authorization_is_missing_api_key(server: LiveServer) -> None:
    with server.client() as client:
        assert_error(client.post("/api/v1/runs", json=body()), 401, "missing_api_key")
        assert_error(client.get("/api/v1/runs/run_x"), 401, "missing_api_key")
        basic = {"Authorization": "Basic dXNlcjpwYXNz"}
        assert_error(
            client.post("/api/v1/runs", json=body(), headers=basic), 401, "missing_api_key"
        )
        empty = {"Authorization": "Bearer"}
        assert_error(client.get("/v1/runs/run_x", headers=empty), 401, "missing_api_key")


def test_unknown_or_disabled_key_is_invalid_api_key(server: LiveServer) -> None:
    with server.client("sk-" + "x" * 40) as client:
        assert_error(client.post("/api/v1/runs", json=body()), 401, "invalid_api_key")
    account = server.admin.create_account("disabled-owner")
    secret = server.admin.create_key(account)
    from sqlalchemy import select

    from runbase.core.keys import hash_secret, set_key_enabled
    from runbase.storage.db import Database
    from runbase.storage.tables import ApiKeyRow

    def disable() -> None:
        database = Database(server.settings.resolved_database_url)
        with database.transaction() as connection:
            key_id = connection.execute(
                select(ApiKeyRow.id).where(ApiKeyRow.key_hash == hash_secret(secret))
            ).scalar_one()
            set_key_enabled(connection, key_id, is_enabled=False)
        database.dispose()

    with server.client(secret) as client:
        assert client.post("/api/v1/runs", json=body()).status_code == 200
        disable()
        time.sleep(1.1)  # servers cache a found key for up to one second
        assert_error(client.post("/api/v1/runs", json=body()), 401, "invalid_api_key")


def test_ip_allowlist(server: LiveServer) -> None:
    elsewhere = server.new_key(allowed_ips=["10.0.0.0/8", "2001:db8::/32"])
    with server.client(elsewhere) as client:
        assert_error(client.post("/api/v1/runs", json=body()), 403, "ip_not_allowed")
        assert_error(client.get("/api/v1/runs/run_x"), 403, "ip_not_allowed")
    here = server.new_key(allowed_ips=["10.0.0.1", "127.0.0.1/32"])
    with server.client(here) as client:
        assert client.post("/api/v1/runs", json=body()).status_code == 200


def test_rate_limit_21st_request_in_10_seconds(server: LiveServer) -> None:
    secret = server.new_key()
    with server.client(secret) as client:
        first = client.post("/api/v1/runs", json=body())
        assert first.headers["X-RateLimit-Limit"] == "20"
        assert first.headers["X-RateLimit-Remaining"] == "19"
        run_id = first.json()["id"]
        for _ in range(19):
            assert client.get(f"/api/v1/runs/{run_id}").status_code == 200
        limited = client.get(f"/api/v1/runs/{run_id}")
        payload = assert_error(limited, 429, "RATE_LIMITED")
        assert payload["error"]["message"] == "Rate limit exceeded"
        assert 1 <= int(limited.headers["Retry-After"]) <= 10
        assert limited.headers["X-RateLimit-Remaining"] == "0"
        assert_error(client.post("/api/v1/runs", json=body()), 429, "RATE_LIMITED")
    # The limit is per key: another key of the same server is unaffected.
    with server.client(server.new_key()) as other:
        assert other.get(f"/api/v1/runs/{run_id}").status_code == 404


@pytest.mark.parametrize(
    ("payload", "code", "mentions"),
    [
        (b"{not json", "invalid_json", "JSON"),
        (b'{"input": {"prompt": "x"}}', "missing_model", "model"),
        (b'{"model": 7, "input": {"prompt": "x"}}', "missing_model", "model"),
        (b"[1, 2]", "missing_model", "model"),
        (b'{"model": "acme/nothing", "input": {"prompt": "x"}}', "model_not_found", "acme/nothing"),
        (b'{"model": "bytedance/seedance-1.5-pro"}', "missing_input", "input"),
        (b'{"model": "bytedance/seedance-1.5-pro", "input": "x"}', "missing_input", "input"),
    ],
)
def test_envelope_errors(server: LiveServer, payload: bytes, code: str, mentions: str) -> None:
    with server.client(server.new_key()) as client:
        response = client.post(
            "/api/v1/runs", content=payload, headers={"Content-Type": "application/json"}
        )
        assert mentions in assert_error(response, 400, code)["error"]["message"]


@pytest.mark.parametrize(
    ("input_", "mentions"),
    [
        ({"prompt": ""}, "input.prompt"),
        ({"prompt": "   "}, "input.prompt"),
        ({"prompt": 3}, "input.prompt"),
        ({"prompt": "x" * 2001}, "2000"),
        ({"prompt": "x", "aspect_ratio": "2:1"}, '"16:9", "9:16", "4:3", "3:4", "1:1", "21:9"'),
        ({"prompt": "x", "resolution": "4k"}, '"480p", "720p", "1080p"'),
        ({"prompt": "x", "duration": "5"}, '"4", "8", "12"'),
        ({"prompt": "x", "duration": 4.5}, "input.duration"),
        ({"prompt": "x", "generate_audio": "yes"}, "input.generate_audio"),
        ({"prompt": "x", "image_urls": ["a", "b", "c"]}, "at most 2"),
        ({"prompt": "x", "image_urls": ["ftp://example.com/a.png"]}, "image_urls[0]"),
        ({"prompt": "x", "image_urls": "https://example.com/a.png"}, "input.image_urls"),
        ({"prompt": "x", "negative_prompt": "blur"}, "negative_prompt"),
        ({"prompt": "x", "seed": 2**32}, "input.seed"),
        ({"prompt": "x", "camera_fixed": 1}, "input.camera_fixed"),
    ],
)
def test_invalid_input_names_the_field(
    server: LiveServer, input_: dict[str, Any], mentions: str
) -> None:
    with server.client(server.new_key()) as client:
        response = client.post("/api/v1/runs", json={"model": SEEDANCE, "input": input_})
        assert mentions in assert_error(response, 400, "invalid_input")["error"]["message"]


def test_checks_run_in_the_documented_order(server: LiveServer) -> None:
    with server.client("sk-" + "y" * 40) as client:  # a bad key beats a bad body
        assert_error(client.post("/api/v1/runs", content=b"{"), 401, "invalid_api_key")
    blocked = server.new_key(allowed_ips=["10.0.0.0/8"])
    with server.client(blocked) as client:  # the allowlist beats a bad body
        assert_error(client.post("/api/v1/runs", content=b"{"), 403, "ip_not_allowed")
    # Quota beats spend limit beats balance: a key with all three exhausted.
    poor = server.new_key(balance_usd=0.0, spend_limit_cents=0, daily_run_quota=0)
    with server.client(poor) as client:
        assert_error(client.post("/api/v1/runs", json=body()), 429, "USAGE_EXCEEDED")
        assert_error(client.post("/api/v1/runs", json={"model": SEEDANCE}), 400, "missing_input")
    poor = server.new_key(balance_usd=0.0, spend_limit_cents=0)
    with server.client(poor) as client:
        assert_error(client.post("/api/v1/runs", json=body()), 403, "api_key_spend_limit_exceeded")
    poor = server.new_key(balance_usd=0.0)
    with server.client(poor) as client:
        assert_error(client.post("/api/v1/runs", json=body()), 402, "insufficient_balance")


def test_daily_quota_is_usage_exceeded(server: LiveServer) -> None:
    with server.client(server.new_key(daily_run_quota=2)) as client:
        assert client.post("/api/v1/runs", json=body()).status_code == 200
        assert client.post("/api/v1/runs", json=body()).status_code == 200
        assert_error(client.post("/api/v1/runs", json=body()), 429, "USAGE_EXCEEDED")


def test_spend_limit_in_cents(server: LiveServer) -> None:
    # 720p 16:9 4 s with audio costs 207,360 micro-USD: 20.736 cents.
    with server.client(server.new_key(spend_limit_cents=50)) as client:
        assert client.post("/api/v1/runs", json=body()).json()["costUsd"] == 207_360
        assert client.post("/api/v1/runs", json=body()).status_code == 200
        response = client.post("/api/v1/runs", json=body())
        assert_error(response, 403, "api_key_spend_limit_exceeded")


def test_create_answers_a_pending_run_object(server: LiveServer) -> None:
    with server.client(server.new_key()) as client:
        response = client.post("/api/v1/runs", json=body(duration=8))
        assert response.status_code == 200
        run = response.json()
    assert set(run) == RUN_FIELDS
    assert re.fullmatch(r"run_[0-9a-z]{26}", run["id"])
    assert run["model"] == SEEDANCE
    assert run["status"] == "pending"
    assert run["costUsd"] == 414_720  # 1280 x 720 x 24 x 8 / 1024 tokens at $2.4/M
    assert TIMESTAMP.match(run["createdAt"])
    assert run["output"] is None and run["error"] is None
    assert run["startedAt"] is None and run["completedAt"] is None
    assert run["input"] == {
        "prompt": "A ceramic lamp on a desk",
        "aspect_ratio": "16:9",
        "resolution": "720p",
        "duration": "8",
        "generate_audio": True,
        "image_urls": [],
    }


@pytest.mark.parametrize("prefix", ["/api/v1", "/v1"])
def test_both_prefixes_and_account_scoping(server: LiveServer, prefix: str) -> None:
    owner = server.admin.create_account(f"owner{prefix.replace('/', '-')}")
    first_key = server.admin.create_key(owner)
    second_key = server.admin.create_key(owner)
    with server.client(first_key) as client:
        run = client.post(f"{prefix}/runs", json=body()).json()
    with server.client(second_key) as client:  # every key of the account sees the run
        assert client.get(f"{prefix}/runs/{run['id']}").json()["id"] == run["id"]
    with server.client(server.new_key()) as stranger:  # other accounts get 404, not 403
        assert_error(stranger.get(f"{prefix}/runs/{run['id']}"), 404, "run_not_found")
        assert_error(stranger.get(f"{prefix}/runs/run_nope"), 404, "run_not_found")


def test_unknown_routes_and_methods_use_the_envelope(server: LiveServer) -> None:
    with server.client(server.new_key()) as client:
        assert_error(client.get("/api/v1/nothing"), 404, "not_found")
        assert_error(client.delete("/api/v1/runs/run_x"), 405, "method_not_allowed")


async def test_unexpected_errors_are_internal_error_without_traceback(tmp_path: Any) -> None:
    from runbase.http.app import create_app
    from support import make_settings

    app = create_app(make_settings(tmp_path, workers=0))

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/boom")
    assert_error(response, 500, "internal_error")
    assert "secret internals" not in response.text


def test_forwarded_for_is_believed_only_from_trusted_proxies(
    start_server: Callable[..., LiveServer],
) -> None:
    forwarded = {"X-Forwarded-For": "198.51.100.9, 10.1.2.3"}
    untrusting = start_server(workers=0)
    key = untrusting.new_key(allowed_ips=["10.0.0.0/8"])
    with untrusting.client(key) as client:  # the header is ignored: the peer is 127.0.0.1
        assert_error(
            client.post("/api/v1/runs", json=body(), headers=forwarded), 403, "ip_not_allowed"
        )
    untrusting.stop()
    trusting = start_server(workers=0, trusted_proxies=["127.0.0.1/32"])
    with trusting.client(key) as client:  # the nearest untrusted hop is 10.1.2.3
        assert client.post("/api/v1/runs", json=body(), headers=forwarded).status_code == 200
        spoofed = {"X-Forwarded-For": "10.1.2.3, 198.51.100.9"}  # a client can't prepend its way in
        assert_error(
            client.post("/api/v1/runs", json=body(), headers=spoofed), 403, "ip_not_allowed"
        )
