"""`Prefer: wait` on create, over real HTTP."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from support import SEEDANCE, LiveServer

BODY = {"model": SEEDANCE, "input": {"prompt": "A lamp", "resolution": "480p"}}


def test_wait_answers_with_the_finished_run(start_server: Callable[..., LiveServer]) -> None:
    server = start_server()
    with server.client(server.new_key()) as client:
        answer = client.post("/api/v1/runs", json=BODY, headers={"Prefer": "wait"})
        assert answer.status_code == 200
        assert answer.headers["Preference-Applied"] == "wait=60"
        run = answer.json()
        assert run["status"] == "succeeded"
        assert run["output"]["urls"][0].startswith(server.base_url + "/files/")
        assert client.get(run["output"]["urls"][0]).status_code == 200
        # A replayed create waits the same way.
        headers = {"Prefer": "respond-async, wait=5", "Idempotency-Key": "w"}
        first = client.post("/api/v1/runs", json=BODY, headers=headers).json()
        replay = client.post("/api/v1/runs", json=BODY, headers=headers)
        assert replay.headers["Idempotent-Replayed"] == "true"
        assert replay.json()["id"] == first["id"] and replay.json()["status"] == "succeeded"


def test_wait_gives_up_after_n_seconds(
    start_server: Callable[..., LiveServer], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RUNBASE_TEST_ENGINE_SECONDS", "30")
    server = start_server(engines=["engine_fixtures:SlowEngine"])
    with server.client(server.new_key()) as client:
        started = time.monotonic()
        answer = client.post("/api/v1/runs", json=BODY, headers={"Prefer": "wait=2"})
        elapsed = time.monotonic() - started
        assert answer.headers["Preference-Applied"] == "wait=2"
        assert answer.json()["status"] in ("pending", "processing")
        assert 1.9 <= elapsed < 5


def test_without_workers_and_with_bad_preferences(
    start_server: Callable[..., LiveServer],
) -> None:
    server = start_server(workers=0)
    with server.client(server.new_key()) as client:
        started = time.monotonic()
        answer = client.post("/api/v1/runs", json=BODY, headers={"Prefer": "wait=1"})
        assert answer.json()["status"] == "pending"
        assert 0.9 <= time.monotonic() - started < 4
        # RFC 7240: a preference that cannot be honoured is ignored, not refused.
        started = time.monotonic()
        ignored = client.post("/api/v1/runs", json=BODY, headers={"Prefer": "wait=soon"})
        assert ignored.status_code == 200 and "Preference-Applied" not in ignored.headers
        assert time.monotonic() - started < 1
        capped = client.post("/api/v1/runs", json=BODY, headers={"Prefer": "wait=0"})
        assert capped.headers["Preference-Applied"] == "wait=0"
