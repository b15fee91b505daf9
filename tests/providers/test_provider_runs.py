"""fal and Replicate as runbase's engine, end to end through a live runbase and the fakes:
the run succeeds with the video re-hosted in runbase's blob store and served by runbase,
checked against the contract (a video of the wrong size fails the run, refunded), its
upstream cost recorded; and callbacks through runbase's callback route, as hints only
(a forged or lying one changes nothing, and none is asked for without a public URL)."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from fakes.common import Fault
from fakes.fal import FakeFal
from fakes.replicate import FakeReplicate
from provider_routes import (
    FAL_KEY,
    REPLICATE_TOKEN,
    attempts,
    check_money,
    create,
    fal_settings,
    replicate_settings,
)
from runbase.core.seedance import FPS, SIZES
from runbase.dispatch.callbacks import CallbackSigner
from runbase.media.probe import probe
from runbase.providers import TokenPrices, video_tokens
from runbase.storage.blobs import load_or_create_secret
from support import SEEDANCE, LiveServer

KINDS = ["fal", "replicate"]
SECRETS = {"fal": FAL_KEY, "replicate": REPLICATE_TOKEN}


def start(
    start_server: Callable[..., LiveServer], name: str, fake: Any, **overrides: Any
) -> LiveServer:
    settings = fal_settings(fake) if name == "fal" else replicate_settings(fake)
    values = {"engines": [name], "rate_limit": "1000/10seconds", **settings}
    return start_server(**(values | overrides))


def upstream_tasks(fake: Any) -> list[str]:
    """The ids of the tasks the fake accepted (fal: requests; Replicate: predictions)."""
    return list(fake.requests if isinstance(fake, FakeFal) else fake.predictions)


@pytest.mark.parametrize("name", KINDS)
def test_a_run_is_made_upstream_and_served_by_runbase(
    start_server: Callable[..., LiveServer],
    request: pytest.FixtureRequest,
    name: str,
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
) -> None:
    fake = request.getfixturevalue(name)
    server = start(start_server, name, fake)
    key = server.new_key()
    run_id = create(server, key, aspect_ratio="9:16", duration="4", seed=7)
    run = server.wait_for_run(key, run_id)
    assert run["status"] == "succeeded", run
    assert run["backend"] == name
    [url] = run["output"]["urls"]
    assert url.startswith(server.base_url + "/")  # runbase's own link, not the provider's
    assert fake.base_url not in json.dumps(run)
    video = tmp_path / "out.mp4"
    with server.client(key) as client:
        video.write_bytes(client.get(url).content)
    info = probe(video)
    assert info.video is not None
    assert (info.video.width, info.video.height) == SIZES[("480p", "9:16")]
    assert info.video.num_frames == FPS * 4 + 1 and info.audio == ()
    [attempt] = attempts(server, run_id)
    assert (attempt.provider, attempt.state) == (name, "succeeded")
    assert attempt.task_id in upstream_tasks(fake)
    width, height = SIZES[("480p", "9:16")]
    tokens = video_tokens(width, height, FPS, 4)
    assert attempt.cost_micros == TokenPrices(1_200_000, 2_400_000).cost_micros(tokens, audio=False)
    assert any("accepted as task" in line for line in run["logs"]), run["logs"]
    made = [line for line in run["logs"] if f"{attempt.task_id} made" in line]  # what made it
    assert made and (name != "fal" or made[0].endswith("with seed 7")), run["logs"]
    check_money(server, run_id, refunded=False)
    server.stop()
    assert SECRETS[name] not in capfd.readouterr().err  # the key is never logged


@pytest.mark.parametrize("name", KINDS)
def test_a_video_that_breaks_the_contract_fails_the_run_refunded(
    start_server: Callable[..., LiveServer], request: pytest.FixtureRequest, name: str
) -> None:
    fake = request.getfixturevalue(name)
    fake.faults.add(Fault.BAD_VIDEO)
    server = start(start_server, name, fake)
    key = server.new_key()
    run = server.wait_for_run(key, create(server, key))
    assert run["status"] == "failed", run
    assert "breaks the contract" in run["error"]["message"]
    assert run["output"] is None
    [attempt] = attempts(server, run["id"])
    assert (attempt.state, attempt.error_class) == ("failed", "task_failed")
    check_money(server, run["id"], refunded=True)


def test_a_seed_fal_cannot_take_is_refused_at_creation(
    start_server: Callable[..., LiveServer], fal: FakeFal
) -> None:
    """The contract's seeds go to 2^32 - 1, fal's stop at 2^31 - 1: with fal alone, such a
    run is refused before anything is charged or sent, not made with another seed."""
    server = start(start_server, "fal", fal)
    key = server.new_key(balance_usd=1.0)
    body = {"model": SEEDANCE, "input": {"prompt": "a cat", "seed": 2**31}}
    with server.client(key) as client:
        refused = client.post("/api/v1/runs", json=body)
    assert refused.status_code == 400, refused.text
    assert refused.json()["error"]["code"] == "invalid_input"
    assert "fal takes seeds up to 2147483647" in refused.json()["error"]["message"]
    assert server.admin.runs() == [] and fal.creates == []


# ---- callbacks ----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def webhook_of(name: str, body: dict[str, Any]) -> str | None:
    value = body.get("webhook")
    return str(value) if value else None


@pytest.mark.parametrize("name", KINDS)
def test_a_callback_wakes_the_run_at_once(
    start_server: Callable[..., LiveServer], request: pytest.FixtureRequest, name: str
) -> None:
    fake = request.getfixturevalue(name)
    port = free_port()
    slow_polls = {f"{name}_poll_interval_seconds": 30.0, f"{name}_max_poll_interval_seconds": 30.0}
    server = start(
        start_server, name, fake, port=port, public_url=f"http://127.0.0.1:{port}", **slow_polls
    )
    key = server.new_key()
    started = time.monotonic()
    run = server.wait_for_run(key, create(server, key), timeout=25)
    assert run["status"] == "succeeded", run
    assert time.monotonic() - started < 20  # the next poll was 30 s away
    [sent] = fake.creates
    url = webhook_of(name, sent)
    assert url is not None
    assert url.startswith(f"http://127.0.0.1:{port}/providers/{name}/callbacks/{run['id']}?sig=")
    statuses = [entry[-1] for entry in fake.webhooks]
    assert 200 in statuses, fake.webhooks  # accepted by runbase: it woke the run


@pytest.mark.parametrize("name", KINDS)
def test_without_a_public_url_no_callback_is_asked_for(
    start_server: Callable[..., LiveServer], request: pytest.FixtureRequest, name: str
) -> None:
    fake = request.getfixturevalue(name)
    server = start(start_server, name, fake)
    key = server.new_key()
    assert server.wait_for_run(key, create(server, key))["status"] == "succeeded"
    [sent] = fake.creates
    assert webhook_of(name, sent) is None
    assert fake.webhooks == []


def forged_and_lying(name: str, fake: Any, task_id: str) -> tuple[Any, Any]:
    """Two callbacks for the task, each saying it succeeded while it is still queued: one
    signed with a key that is not the provider's, one with the provider's own."""
    if name == "fal":
        body = json.dumps({"request_id": task_id, "status": "OK", "payload": {}}).encode()
        stranger = FakeFal(FAL_KEY, Path("/nonexistent"))
        return (stranger.sign(task_id, body), body), (fake.sign(task_id, body), body)
    body = json.dumps({"id": task_id, "status": "succeeded", "output": "http://x/v.mp4"}).encode()
    stranger = FakeReplicate(REPLICATE_TOKEN, Path("/nonexistent"))
    stamp = int(time.time())

    def headers(signer: FakeReplicate) -> dict[str, str]:
        return {
            "content-type": "application/json",
            "webhook-id": "msg_1",
            "webhook-timestamp": str(stamp),
            "webhook-signature": signer.sign("msg_1", stamp, body),
        }

    return (headers(stranger), body), (headers(fake), body)


@pytest.mark.parametrize("name", KINDS)
def test_forged_and_lying_callbacks_change_nothing(
    start_server: Callable[..., LiveServer], request: pytest.FixtureRequest, name: str
) -> None:
    fake = request.getfixturevalue(name)
    if name == "fal":
        fake.queue_seconds = 3600.0  # the request stays queued upstream
    else:
        fake.starting_seconds = 3600.0
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = start(start_server, name, fake, port=port, public_url=base)
    key = server.new_key()
    run_id = create(server, key)
    deadline = time.monotonic() + 20
    while not fake.creates:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    [sent] = fake.creates
    [task_id] = upstream_tasks(fake)
    signer = CallbackSigner(
        load_or_create_secret(server.settings.data_dir / "url-signing.key"), base
    )
    url = signer.url(name, run_id)
    assert url is not None and url == webhook_of(name, sent)
    (forged_headers, body), (true_headers, _) = forged_and_lying(name, fake, task_id)

    unsigned = httpx.post(url, content=body)
    assert (unsigned.status_code, unsigned.json()["woken"]) == (202, False)
    forged = httpx.post(url, content=body, headers=forged_headers)
    assert (forged.status_code, forged.json()["woken"]) == (202, False)
    wrong_url = httpx.post(
        f"{base}/providers/{name}/callbacks/{run_id}?sig={'0' * 64}", content=body
    )
    assert wrong_url.status_code == 403
    # Signed by the provider, naming the right task, but lying: the run reads it back.
    lying = httpx.post(url, content=body, headers=true_headers)
    assert (lying.status_code, lying.json()["woken"]) == (200, True)
    time.sleep(1.0)
    with server.client(key) as client:
        run = client.get(f"/api/v1/runs/{run_id}").json()
    assert run["status"] == "processing", run
    assert len(fake.creates) == 1
