"""Provider callbacks as a fast path: with `RUNBASE_PUBLIC_URL` set, ModelArk's
`callback_url` wakes the run's poll loop at once; without it (or when callbacks are lost or
forged) polling carries on and nothing changes."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import httpx

from fakes.modelark import FakeModelArk
from provider_routes import ARK_KEY
from runbase.dispatch.callbacks import CallbackSigner
from runbase.storage.local_blobs import load_or_create_secret
from support import SEEDANCE, LiveServer


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start(
    start_server: Callable[..., LiveServer], ark: FakeModelArk, **overrides: Any
) -> LiveServer:
    values: dict[str, Any] = {
        "engines": ["ark"],
        "ark_base_url": ark.base_url + "/api/v3",
        "ark_api_key": ARK_KEY,
        "ark_allow_private_hosts": True,
        # Polls 30 s apart: a run that ends within seconds was woken by its callback.
        "ark_poll_interval_seconds": 30.0,
        "ark_max_poll_interval_seconds": 30.0,
        "rate_limit": "1000/10seconds",
    }
    return start_server(**(values | overrides))


def create(server: LiveServer, key: str) -> str:
    body = {"model": SEEDANCE, "input": {"prompt": "a harbour", "resolution": "480p"}}
    with server.client(key) as client:
        return str(client.post("/api/v1/runs", json=body).json()["id"])


def test_a_callback_wakes_the_run_at_once(
    start_server: Callable[..., LiveServer], ark: FakeModelArk
) -> None:
    port = free_port()
    server = start(start_server, ark, port=port, public_url=f"http://127.0.0.1:{port}")
    key = server.new_key()
    started = time.monotonic()
    run = server.wait_for_run(key, create(server, key), timeout=25)
    assert run["status"] == "succeeded", run
    assert time.monotonic() - started < 20  # the next poll was 30 s away
    [body] = ark.creates
    assert body["callback_url"].startswith(f"http://127.0.0.1:{port}/providers/ark/callbacks/")
    assert "sig=" in body["callback_url"]
    assert any(call[1] == "succeeded" for call in ark.callbacks)


def test_without_a_public_url_no_callback_is_asked_for(
    start_server: Callable[..., LiveServer], ark: FakeModelArk
) -> None:
    server = start(
        start_server, ark, ark_poll_interval_seconds=0.05, ark_max_poll_interval_seconds=0.2
    )
    key = server.new_key()
    run = server.wait_for_run(key, create(server, key))
    assert run["status"] == "succeeded"
    assert "callback_url" not in ark.creates[0]
    with server.client() as client:  # and the route is not there
        assert client.post("/providers/ark/callbacks/run_x?sig=00").status_code == 404


def test_forged_and_lying_callbacks_change_nothing(
    start_server: Callable[..., LiveServer], ark: FakeModelArk
) -> None:
    ark.queued_seconds = 3600.0  # the task stays queued upstream
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start(start_server, ark, port=port, public_url=base)
    key = server.new_key()
    run_id = create(server, key)
    deadline = time.monotonic() + 20
    while not ark.tasks:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    [task_id] = ark.tasks
    signer = CallbackSigner(
        load_or_create_secret(server.settings.data_dir / "url-signing.key"), base
    )
    url = signer.url("ark", run_id)
    assert url is not None and url == ark.creates[0]["callback_url"]
    lie = {"id": task_id, "status": "succeeded", "content": {"video_url": "http://x/v.mp4"}}

    forged = httpx.post(f"{base}/providers/ark/callbacks/{run_id}?sig={'0' * 64}", json=lie)
    assert forged.status_code == 403
    assert forged.json()["error"]["code"] == "invalid_signature"
    other_run = httpx.post(url.replace(run_id, "run_other"), json=lie)
    assert other_run.status_code == 403  # the signature names the run
    other_task = httpx.post(url, json={**lie, "id": "cgt-someone-else"})
    assert (other_task.status_code, other_task.json()["woken"]) == (202, False)

    # Signed, naming the right task, but lying about it: the run reads the task back.
    polls_before = len(ark.callbacks)
    answer = httpx.post(url, json=lie)
    assert (answer.status_code, answer.json()["woken"]) == (200, True)
    time.sleep(1.0)
    with server.client(key) as client:
        run = client.get(f"/api/v1/runs/{run_id}").json()
    assert run["status"] == "processing", run
    assert ark.status(ark.tasks[task_id]) == "queued"
    assert len(ark.callbacks) >= polls_before
