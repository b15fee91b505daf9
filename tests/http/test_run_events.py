"""`GET /api/v1/runs/{id}/events` (server-sent events) and `queuePosition`, over real HTTP."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from support import SEEDANCE, LiveServer

BODY = {"model": SEEDANCE, "input": {"prompt": "A lamp", "resolution": "480p"}}


def read_events(
    client: httpx.Client, run_id: str, headers: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """Every event of the stream, until the server ends it."""
    found: list[dict[str, Any]] = []
    with client.stream("GET", f"/api/v1/runs/{run_id}/events", headers=headers) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        event: dict[str, Any] = {}
        for line in response.iter_lines():
            if not line:
                if "data" in event:
                    found.append(event)
                event = {}
            elif line.startswith(("id: ", "event: ", "data: ")):
                name, _, value = line.partition(": ")
                event[name] = json.loads(value) if name == "data" else value
    return found


def test_a_client_sees_pending_processing_progress_and_succeeded(
    start_server: Callable[..., LiveServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNBASE_TEST_ENGINE_SECONDS", "3")
    server = start_server(engines=["engine_fixtures:SlowEngine"])
    key = server.new_key()
    with server.client(key) as client:
        run_id = client.post("/api/v1/runs", json=BODY).json()["id"]
        events = read_events(client, run_id)
        statuses = [e["data"]["status"] for e in events if e["event"] == "status"]
        assert statuses == ["pending", "processing", "succeeded"]
        kinds = [e["event"] for e in events]
        first_progress = kinds.index("progress")
        assert kinds.index("status") < first_progress < len(kinds) - 1
        assert [int(e["id"]) for e in events] == list(range(1, len(events) + 1))
        fractions = [e["data"]["progress"] for e in events if e["event"] == "progress"]
        assert fractions == sorted(fractions) and 0 < fractions[-1] < 1
        final = events[-1]["data"]
        assert final["run"]["status"] == "succeeded" and final["run"]["output"]["urls"]
        # Reconnecting with Last-Event-ID replays only what came after, then ends.
        replay = read_events(client, run_id, headers={"Last-Event-ID": "2"})
        assert [e["id"] for e in replay] == [e["id"] for e in events[2:]]
        assert read_events(client, run_id, headers={"Last-Event-ID": events[-1]["id"]}) == []
        bad = client.get(f"/api/v1/runs/{run_id}/events", headers={"Last-Event-ID": "x"})
        assert bad.status_code == 400
    with server.client(server.new_key()) as stranger:
        missing = stranger.get(f"/api/v1/runs/{run_id}/events")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "run_not_found"


def test_a_canceled_run_ends_its_stream(start_server: Callable[..., LiveServer]) -> None:
    server = start_server(workers=0)
    key = server.new_key()
    with server.client(key) as client:
        run_id = client.post("/api/v1/runs", json=BODY).json()["id"]
        assert client.post(f"/api/v1/runs/{run_id}/cancel").status_code == 200
        events = read_events(client, run_id)
    assert [e["data"]["status"] for e in events] == ["pending", "canceled"]
    assert events[-1]["data"]["run"]["error"]["code"] == "canceled"


def test_queue_position_while_pending(start_server: Callable[..., LiveServer]) -> None:
    server = start_server(workers=0)
    key = server.new_key()
    with server.client(key) as client:
        ids = [client.post("/api/v1/runs", json=BODY).json()["id"] for _ in range(3)]
        positions = [client.get(f"/api/v1/runs/{i}").json()["queuePosition"] for i in ids]
        assert positions == [0, 1, 2]
        client.post(f"/api/v1/runs/{ids[0]}/cancel")
        assert client.get(f"/api/v1/runs/{ids[0]}").json()["queuePosition"] is None
        assert client.get(f"/api/v1/runs/{ids[2]}").json()["queuePosition"] == 1
    # The queue is shared: another account's runs ahead count too.
    with server.client(server.new_key()) as other:
        later = other.post("/api/v1/runs", json=BODY).json()["id"]
        assert other.get(f"/api/v1/runs/{later}").json()["queuePosition"] == 2
