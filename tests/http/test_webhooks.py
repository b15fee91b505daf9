"""Webhooks over real HTTP: a receiver on 127.0.0.1 that verifies Standard Webhooks
signatures, retries after a 500, the event filter, address rules, and a restart."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from support import SEEDANCE, LiveServer

BODY = {"model": SEEDANCE, "input": {"prompt": "A lamp", "resolution": "480p"}}
HOOKS = {
    "allow_private_webhook_hosts": True,
    "webhook_http_hosts": ["127.0.0.1"],
    "webhook_retry_seconds": 0.2,
}


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes

    @property
    def run(self) -> dict[str, Any]:
        payload: dict[str, Any] = json.loads(self.body)
        return payload


@dataclass
class Receiver:
    """A webhook endpoint: answers `statuses` in turn (then 200) and keeps what it got."""

    url: str
    statuses: list[int] = field(default_factory=list)
    received: list[Delivery] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def wait_for(self, count: int, timeout: float = 30) -> list[Delivery]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count:
            assert time.monotonic() < deadline, f"got {len(self.received)} of {count} deliveries"
            time.sleep(0.05)
        return list(self.received)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers["Content-Length"])
            headers = {name.lower(): value for name, value in self.headers.items()}
            delivery = Delivery(headers, self.rfile.read(length))
            with state.lock:
                state.received.append(delivery)
                status = state.statuses.pop(0) if state.statuses else 200
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hooks?source=runbase"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


def verify(secret: str, delivery: Delivery) -> None:
    """What a receiver does, straight from the Standard Webhooks spec."""
    headers = delivery.headers
    signed = f"{headers['webhook-id']}.{headers['webhook-timestamp']}.".encode() + delivery.body
    key = base64.b64decode(secret.removeprefix("whsec_"))
    expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
    signatures = [s.partition(",")[2] for s in headers["webhook-signature"].split()]
    assert any(hmac.compare_digest(expected, s) for s in signatures)
    assert abs(int(headers["webhook-timestamp"]) - time.time()) < 300


def test_signed_deliveries_with_a_retry_after_a_500(
    start_server: Callable[..., LiveServer], receiver: Receiver
) -> None:
    receiver.statuses = [500]  # the first delivery fails once
    server = start_server(**HOOKS)
    key = server.new_key()
    with server.client(key) as client:
        secret = client.get("/api/v1/webhooks/secret").json()["key"]
        assert secret.startswith("whsec_") and len(base64.b64decode(secret[6:])) == 32
        assert client.get("/v1/webhooks/secret").json()["key"] == secret  # stable
        run = client.post("/api/v1/runs", json={**BODY, "webhook": receiver.url}).json()
    assert set(run) >= {"id", "status"} and "webhook" not in run  # the run object is unchanged
    deliveries = receiver.wait_for(3)
    time.sleep(0.5)  # nothing more should come
    deliveries = receiver.received
    for delivery in deliveries:
        verify(secret, delivery)
        assert delivery.headers["content-type"] == "application/json"
        assert delivery.run["id"] == run["id"]
    first, retry, completed = deliveries
    assert first.headers["webhook-id"] == retry.headers["webhook-id"]  # a retry, same message
    assert first.body == retry.body
    assert first.run["status"] == "processing"  # `start`
    assert completed.headers["webhook-id"] != first.headers["webhook-id"]
    assert completed.run["status"] == "succeeded"
    assert completed.run["output"]["urls"][0].startswith(server.base_url + "/files/")
    assert len(deliveries) == 3


def test_the_events_filter(
    start_server: Callable[..., LiveServer],
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RUNBASE_TEST_ENGINE_SECONDS", "2.5")
    server = start_server(engines=["engine_fixtures:SlowEngine"], **HOOKS)
    key = server.new_key()
    request = {**BODY, "webhook": receiver.url, "webhookEventsFilter": ["progress", "completed"]}
    with server.client(key) as client:
        run_id = client.post("/api/v1/runs", json=request).json()["id"]
    server.wait_for_run(key, run_id)
    time.sleep(1)
    statuses = [d.run["status"] for d in receiver.received]
    assert statuses[-1] == "succeeded"
    assert len(statuses) >= 2 and set(statuses[:-1]) == {"processing"}  # progress only
    assert all(0 <= d.run["progress"] < 1 for d in receiver.received[:-1])


@pytest.mark.parametrize(
    ("extra", "mentions"),
    [
        ({"webhook": "ftp://example.com/x"}, "https://"),
        ({"webhook": "http://example.com/x"}, "RUNBASE_WEBHOOK_HTTP_HOSTS"),
        ({"webhook": "https://10.1.2.3/x"}, "private"),
        ({"webhook": "https://[::1]/x"}, "loopback"),
        ({"webhook": "https://169.254.169.254/latest"}, "link-local"),
        ({"webhook": 7}, "webhook"),
        ({"webhook": "https://user:pw@example.com/"}, "password"),
        ({"webhook": "https://example.com/", "webhookEventsFilter": ["output"]}, '"start"'),
        ({"webhook": "https://example.com/", "webhookEventsFilter": []}, "webhookEventsFilter"),
        ({"webhook": "https://example.com/", "webhookEventsFilter": "start"}, "array"),
    ],
)
def test_webhook_fields_are_checked_at_creation(
    start_server: Callable[..., LiveServer], extra: dict[str, Any], mentions: str
) -> None:
    server = start_server(workers=0)
    with server.client(server.new_key()) as client:
        answer = client.post("/api/v1/runs", json={**BODY, **extra})
    assert answer.status_code == 400
    assert answer.json()["error"]["code"] == "invalid_input"
    assert mentions in answer.json()["error"]["message"]
    assert server.admin.runs() == []


def test_a_name_resolving_to_loopback_is_refused_when_sent(
    start_server: Callable[..., LiveServer], receiver: Receiver
) -> None:
    # Allowed over http, but private addresses are not: the check happens at connect time.
    port = receiver.url.split(":")[2].split("/")[0]
    server = start_server(webhook_http_hosts=["localhost"], webhook_retry_seconds=0.2)
    key = server.new_key()
    with server.client(key) as client:
        run = client.post(
            "/api/v1/runs", json={**BODY, "webhook": f"http://localhost:{port}/hooks"}
        ).json()
    server.wait_for_run(key, run["id"])
    deadline = time.monotonic() + 10
    from runbase.storage.tables import WebhookDeliveryRow

    while True:
        rows = server.admin.select(WebhookDeliveryRow.__table__)
        if rows and all(row.status == "failed" for row in rows):
            break
        assert time.monotonic() < deadline, rows
        time.sleep(0.1)
    assert receiver.received == []
    assert all("loopback" in row.last_error and row.attempts == 1 for row in rows)


def test_deliveries_survive_a_restart(
    start_server: Callable[..., LiveServer], receiver: Receiver
) -> None:
    receiver.statuses = [503] * 1000  # down for now
    server = start_server(**HOOKS)
    key = server.new_key()
    with server.client(key) as client:
        run = client.post(
            "/api/v1/runs",
            json={**BODY, "webhook": receiver.url, "webhookEventsFilter": ["completed"]},
        ).json()
    server.wait_for_run(key, run["id"])
    receiver.wait_for(2)  # tried, and retried
    server.stop()
    with receiver.lock:
        receiver.statuses.clear()  # back up
        receiver.received.clear()
    start_server(**HOOKS)
    [delivery] = receiver.wait_for(1)
    assert delivery.run["id"] == run["id"] and delivery.run["status"] == "succeeded"


def test_a_4xx_answer_is_not_retried(
    start_server: Callable[..., LiveServer], receiver: Receiver
) -> None:
    receiver.statuses = [410]
    server = start_server(**HOOKS)
    key = server.new_key()
    with server.client(key) as client:
        client.post(
            "/api/v1/runs",
            json={**BODY, "webhook": receiver.url, "webhookEventsFilter": ["completed"]},
        )
    receiver.wait_for(1)
    time.sleep(1.0)
    assert len(receiver.received) == 1


def test_test_runs_are_signed_with_the_test_secret(
    start_server: Callable[..., LiveServer], receiver: Receiver
) -> None:
    """Test and live apart, webhooks included: each mode has its own signing secret."""
    server = start_server(**HOOKS)
    account = server.admin.create_account("acme", 10.0)
    live_key = server.admin.create_key(account)
    test_key = server.admin.create_key(account, is_test=True)
    with server.client(live_key) as live, server.client(test_key) as test:
        live_secret = live.get("/api/v1/webhooks/secret").json()["key"]
        test_secret = test.get("/api/v1/webhooks/secret").json()["key"]
        assert test_secret.startswith("whsec_") and test_secret != live_secret
        assert test.get("/v1/webhooks/secret").json()["key"] == test_secret  # stable
        run = test.post("/api/v1/runs", json={**BODY, "webhook": receiver.url}).json()
    deliveries = receiver.wait_for(2)
    for delivery in deliveries:
        assert delivery.run["id"] == run["id"]
        verify(test_secret, delivery)
        with pytest.raises(AssertionError):
            verify(live_secret, delivery)
