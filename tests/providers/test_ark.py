"""The ModelArk provider against the fake ModelArk (tests/fakes/modelark.py), through a live
runbase: success to a probed MP4, failures refunded, expiry, 429 storms, prompt text
commands, the key kept secret, the attempts table, and a SIGKILL of runbase in the middle
of a task."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from fakes.modelark import FakeModelArk
from provider_routes import ARK_KEY
from runbase.media.probe import probe
from runbase.providers.ark import strip_text_commands
from runbase.storage.tables import UpstreamAttemptRow
from server_process import ServerProcess, free_port
from support import SEEDANCE, Admin, LiveServer, make_settings

TESTS_DIR = Path(__file__).resolve().parents[1]
TASKS = "/contents/generations/tasks"


def start_ark_server(
    start_server: Callable[..., LiveServer], fake: FakeModelArk, *, allow_private: bool = True
) -> LiveServer:
    return start_server(
        engines=["ark"],
        ark_base_url=fake.base_url + "/api/v3",
        ark_api_key=ARK_KEY,
        ark_allow_private_hosts=allow_private,
        ark_poll_interval_seconds=0.05,
        rate_limit="1000/10seconds",
    )


def create_run(server: LiveServer, key: str, **input: Any) -> str:
    body = {"model": SEEDANCE, "input": {"resolution": "480p", "duration": 4, **input}}
    with server.client(key) as client:
        response = client.post("/api/v1/runs", json=body)
    assert response.status_code == 200, response.text
    return str(response.json()["id"])


def test_strip_text_commands() -> None:
    prompt = "a cat --dur 12 surfing --rs=1080p --ratio 21:9 --seed -1 --cf true --wm --fps 30"
    cleaned, removed = strip_text_commands(prompt)
    assert cleaned == "a cat surfing"
    assert removed == [
        "--dur 12",
        "--rs=1080p",
        "--ratio 21:9",
        "--seed -1",
        "--cf true",
        "--wm",
        "--fps 30",
    ]
    assert "--fps 30" not in cleaned and "--" not in cleaned
    assert strip_text_commands("a well-known -- dash")[0] == "a well-known -- dash"


def test_success_strips_flags_and_keeps_the_key_secret(
    start_server: Callable[..., LiveServer],
    ark: FakeModelArk,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    server = start_ark_server(start_server, ark)
    key = server.new_key()
    image = "data:image/png;base64," + _png_base64()
    run_id = create_run(
        server,
        key,
        prompt='a cat "hello" --dur 12 --rs 1080p surfing',
        generate_audio=True,
        image_urls=[image],
        aspect_ratio="16:9",
        seed=7,
    )
    run = server.wait_for_run(key, run_id, timeout=60)
    assert run["status"] == "succeeded", run
    assert run["backend"] == "ark"
    [body] = ark.creates
    assert body["model"] == "seedance-1-5-pro-251215"
    assert body["content"][0] == {"type": "text", "text": 'a cat "hello" surfing'}
    assert body["content"][1]["role"] == "first_frame"
    assert body["content"][1]["image_url"]["url"] == image
    assert (body["resolution"], body["ratio"], body["duration"]) == ("480p", "16:9", 4)
    assert (body["seed"], body["generate_audio"], body["watermark"]) == (7, True, False)
    with server.client(key) as client:
        video = client.get(run["output"]["urls"][0])
    assert video.status_code == 200
    path = tmp_path / "out.mp4"
    path.write_bytes(video.content)
    info = probe(path)
    assert info.video is not None
    assert (info.video.width, info.video.height, info.video.num_frames) == (864, 496, 97)
    assert info.audio
    assert any("text commands removed" in line for line in run["logs"] or []), run["logs"]
    [task_id] = ark.tasks
    assert f"ModelArk task {task_id} made by seedance-1-5-pro-251215" in run["logs"]

    server.stop()
    captured = capfd.readouterr()
    assert ARK_KEY not in captured.out + captured.err
    assert ARK_KEY not in json.dumps(run)
    assert ARK_KEY not in repr(server.admin.runs())
    assert ARK_KEY not in repr(server.settings)


def test_failures_are_refunded(start_server: Callable[..., LiveServer], ark: FakeModelArk) -> None:
    server = start_ark_server(start_server, ark)
    key = server.new_key()

    ark.fail_next(
        "OutputVideoSensitiveContentDetected", "The output may contain sensitive content."
    )
    refused_output = create_run(server, key, prompt="a beach", generate_audio=False)
    run = server.wait_for_run(key, refused_output)
    assert run["status"] == "failed"
    assert run["error"]["code"] == "upstream_error"
    assert "OutputVideoSensitiveContentDetected" in run["error"]["message"]
    assert "content policy" in run["error"]["message"]

    ark.sensitive_words.add("forbidden")
    refused_input = create_run(server, key, prompt="something forbidden", generate_audio=False)
    run = server.wait_for_run(key, refused_input)
    assert run["status"] == "failed"
    assert "InputTextSensitiveContentDetected" in run["error"]["message"]

    # The task never finishes and passes its execution_expires_after (48 h by default).
    ark.stall_next()
    expiring = create_run(server, key, prompt="a slow one", generate_audio=False)
    _wait_for(lambda: len(ark.creates) == 2)
    ark.advance(172800 + 1)
    run = server.wait_for_run(key, expiring)
    assert run["status"] == "failed"
    assert "expired" in run["error"]["message"]
    ark.advance(-(172800 + 1))

    # The upstream link is gone by the time it is fetched (its 24 h ran out).
    ark.url_ttl_seconds = -1
    gone = create_run(server, key, prompt="a lost video", generate_audio=False)
    run = server.wait_for_run(key, gone)
    assert run["status"] == "failed"
    assert "expired" in run["error"]["message"]

    [row] = [r for r in server.admin.runs() if r.id == gone]
    server.admin.check_books(row.account_id)


def test_a_video_link_to_a_private_address_is_refused(
    start_server: Callable[..., LiveServer], ark: FakeModelArk
) -> None:
    """The fake's video links point at 127.0.0.1: without the operator's leave, the worker
    will not download from there, and the run fails refunded."""
    server = start_ark_server(start_server, ark, allow_private=False)
    key = server.new_key()
    run_id = create_run(server, key, prompt="a beach", generate_audio=False)
    run = server.wait_for_run(key, run_id)
    assert run["status"] == "failed", run
    assert run["error"]["code"] == "upstream_error"
    assert "127.0.0.1, a loopback address" in run["error"]["message"]
    assert len(ark.creates) == 1
    [row] = [r for r in server.admin.runs() if r.id == run_id]
    server.admin.check_books(row.account_id)


def test_a_429_storm_is_ridden_out(
    start_server: Callable[..., LiveServer], ark: FakeModelArk
) -> None:
    server = start_ark_server(start_server, ark)
    key = server.new_key()
    ark.too_many_requests(4)
    run_id = create_run(server, key, prompt="a storm", generate_audio=False)
    run = server.wait_for_run(key, run_id)
    assert run["status"] == "succeeded", run
    assert len(ark.creates) == 1
    assert any("retrying" in line for line in run["logs"] or []), run["logs"]


def test_without_a_key_the_provider_cannot_start(tmp_path: Path) -> None:
    from runbase.providers import load_provider

    provider = load_provider("ark", make_settings(tmp_path))
    assert "RUNBASE_ARK_API_KEY" in (provider.configuration_problem() or "")


@pytest.mark.slow
def test_sigkill_mid_task_resumes_the_same_upstream_task(ark: FakeModelArk, tmp_path: Path) -> None:
    ark.queued_seconds, ark.running_seconds = 1.0, 2.0
    data_dir = tmp_path / "data"
    port = free_port()
    server = _serve(data_dir, port, ark)
    try:
        key = server.printed_key
        assert key is not None
        headers = {"Authorization": f"Bearer {key}"}
        base_url = f"http://127.0.0.1:{port}"
        body = {"model": SEEDANCE, "input": {"prompt": "a crash", "resolution": "480p"}}
        run_id = httpx.post(base_url + "/api/v1/runs", json=body, headers=headers).json()["id"]
        _wait_for(lambda: len(ark.creates) == 1)
        time.sleep(0.2)  # the task id is recorded as soon as the create answer is read
        server.kill()
    finally:
        server.stop()

    server = _serve(data_dir, port, ark)
    try:
        deadline = time.monotonic() + 60
        while True:
            run = httpx.get(f"{base_url}/api/v1/runs/{run_id}", headers=headers).json()
            if run["status"] in ("succeeded", "failed"):
                break
            assert time.monotonic() < deadline, run
            time.sleep(0.1)
    finally:
        server.stop()
    assert run["status"] == "succeeded", run
    assert len(ark.creates) == 1
    admin = Admin(make_settings(data_dir))
    [row] = admin.runs()
    assert row.attempts == 2
    admin.check_books(row.account_id)
    # One upstream attempt, resumed from the database by the restarted server.
    [attempt] = admin.select(UpstreamAttemptRow.__table__)
    assert attempt.state == "succeeded" and attempt.provider == "ark"
    assert attempt.task_id == next(iter(ark.tasks))
    assert any("resuming task" in line for line in run["logs"]), run["logs"]


# ---- helpers ---------------------------------------------------------------------------


def _serve(data_dir: Path, port: int, fake: FakeModelArk) -> ServerProcess:
    return ServerProcess(
        data_dir,
        port,
        {
            "RUNBASE_ENGINES": "ark",
            "RUNBASE_ARK_API_KEY": ARK_KEY,
            "RUNBASE_ARK_BASE_URL": fake.base_url + "/api/v3",
            "RUNBASE_ARK_ALLOW_PRIVATE_HOSTS": "true",
            "RUNBASE_ARK_POLL_INTERVAL_SECONDS": "0.05",
            "RUNBASE_LEASE_SECONDS": "2",
            "RUNBASE_POLL_INTERVAL_SECONDS": "0.1",
        },
    )


def _wait_for(condition: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def _png_base64() -> str:
    import base64
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (640, 360), (200, 120, 40)).save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_cancel_deletes_the_queued_upstream_task(
    start_server: Callable[..., LiveServer], ark: FakeModelArk
) -> None:
    ark.queued_seconds = 60.0
    server = start_ark_server(start_server, ark)
    key = server.new_key()
    run_id = create_run(server, key, prompt="never mind", generate_audio=False)
    _wait_for(lambda: len(ark.tasks) == 1)
    with server.client(key) as client:
        response = client.post(f"/api/v1/runs/{run_id}/cancel")
    assert response.status_code == 200, response.text
    run = server.wait_for_run(key, run_id, until=("canceled", "failed", "succeeded"))
    assert run["status"] == "canceled"
    [task] = ark.tasks.values()
    assert ark.status(task) == "cancelled"


def test_the_fake_follows_the_documented_rules(ark: FakeModelArk) -> None:
    api = httpx.Client(
        base_url=ark.base_url + "/api/v3",
        headers={"Authorization": f"Bearer {ARK_KEY}"},
    )
    text = {"type": "text", "text": "a dog"}
    image = {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}
    bad = api.post(
        TASKS, json={"model": "seedance-1-5-pro-251215", "content": [text, image, image]}
    )
    assert bad.status_code == 400
    assert bad.json()["error"]["code"] == "InvalidParameter"
    assert "role must be specified" in bad.json()["error"]["message"]
    assert api.post(TASKS, json={"model": "nope", "content": [text]}).status_code == 400
    assert httpx.get(ark.base_url + "/api/v3" + TASKS, timeout=5).status_code == 401

    # Callbacks on every change; terminal ones retried 3 times when not acknowledged.
    body = {"model": "seedance-1-5-pro-251215", "content": [text], "duration": 4}
    body["resolution"], body["generate_audio"] = "480p", False
    unanswered = {**body, "callback_url": "http://127.0.0.1:9/nobody"}
    task_id = api.post(TASKS, json=unanswered).json()["id"]
    _wait_for(lambda: len([c for c in ark.callbacks if c[1] == "succeeded"]) == 4, timeout=10)
    assert [c[1] for c in ark.callbacks if c[0] == task_id][:2] == ["queued", "running"]
    assert api.get(f"{TASKS}/{task_id}").json()["status"] == "succeeded"

    # A running task cannot be cancelled; a queued one can; a finished one is deleted.
    ark.queued_seconds = 60.0
    queued = api.post(TASKS, json=body).json()["id"]
    assert api.delete(f"{TASKS}/{queued}").status_code == 200
    assert api.get(f"{TASKS}/{queued}").json()["status"] == "cancelled"
    assert api.delete(f"{TASKS}/{queued}").status_code == 409
    ark.queued_seconds, ark.running_seconds = 0.0, 60.0
    running = api.post(TASKS, json=body).json()["id"]
    assert api.delete(f"{TASKS}/{running}").status_code == 409
    assert api.delete(f"{TASKS}/{task_id}").status_code == 200
    assert api.get(f"{TASKS}/{task_id}").status_code == 404
    listed = api.get(TASKS, params={"filter.status": "running", "page_size": 5}).json()
    assert [item["id"] for item in listed["items"]] == [running]

    # Only the last 7 days are visible.
    ark.advance(7 * 24 * 3600 + 1)
    assert api.get(f"{TASKS}/{running}").status_code == 404
    api.close()
