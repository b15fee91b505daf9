"""The fal provider against the fake fal (tests/fakes/fal.py): the contract mapped to fal's
fields, each failure class, cancel, refusal at creation, and webhooks checked against the
JWKS. End-to-end runs through a live server are in test_provider_runs.py."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from provider_support import KeptLog, make_job, run_to_end
from pydantic import SecretStr

from fakes.common import FakeServer, Fault
from fakes.fal import IMAGE_TO_VIDEO, TEXT_TO_VIDEO, FakeFal
from runbase.providers import (
    AttemptState,
    CallbackRequest,
    ContentRefused,
    InputUnsupported,
    NotAccepted,
    Pacing,
    SubmitUncertain,
    TaskFailed,
    TokenPrices,
)
from runbase.providers.fal import FalProvider

KEY = "fal-id:fal-secret"


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeFal]:
    fake = FakeFal(KEY, tmp_path / "videos", queue_seconds=0.1, run_seconds=0.1)
    server = FakeServer(fake)
    server.start()
    yield fake
    server.stop()


@pytest.fixture
async def provider(fake: FakeFal) -> AsyncIterator[FalProvider]:
    provider = FalProvider(
        api_key=SecretStr(KEY),
        queue_url=fake.base_url,
        jwks_url=fake.base_url + "/.well-known/jwks.json",
        prices=TokenPrices(silent=1_200_000, audio=2_400_000),
        pacing=Pacing(poll_interval_s=0.05, allow_private_hosts=True, submit_retry_s=2.0),
    )
    await provider.start()
    yield provider
    await provider.close()


async def test_text_to_video_maps_the_contract(fake: FakeFal, provider: FalProvider) -> None:
    job = make_job(
        aspect_ratio="21:9",
        resolution="720p",
        duration="12",
        seed=77,
        camera_fixed=True,
        generate_audio=False,
    )
    log = KeptLog()
    task = await provider.submit(job, log)
    output = await run_to_end(provider, task, log)
    assert fake.creates[0]["endpoint"] == TEXT_TO_VIDEO
    assert fake.creates[0]["input"] == {
        "prompt": "a red fox",
        "aspect_ratio": "21:9",
        "resolution": "720p",
        "duration": "12",
        "generate_audio": False,
        "seed": 77,
        "camera_fixed": True,
    }
    # The fake writes a geometry's MP4 on its first GET: seconds on a busy machine.
    assert httpx.get(output.video_url, timeout=60).headers["content-type"] == "video/mp4"
    # 1470 x 630 x 24 x 12 / 1024 = 260,466 tokens at $1.2 per million, without audio.
    assert provider.cost_micros(job, output, AttemptState.SUCCEEDED) == 312_560
    assert provider.cost_micros(job, None, AttemptState.FAILED) == 0


async def test_first_and_last_frame_go_to_image_to_video(
    fake: FakeFal, provider: FalProvider
) -> None:
    job = make_job(image_urls=["https://x.example/a.png", "https://x.example/b.png"])
    await provider.submit(job, KeptLog())
    sent = fake.creates[0]
    assert sent["endpoint"] == IMAGE_TO_VIDEO
    assert sent["input"]["image_url"] == "https://x.example/a.png"
    assert sent["input"]["end_image_url"] == "https://x.example/b.png"


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (Fault.SERVER_ERROR, NotAccepted),
        (Fault.AUTH, NotAccepted),
        (Fault.QUOTA, NotAccepted),
        (Fault.CONNECTION, SubmitUncertain),
    ],
)
async def test_refused_submits(
    fake: FakeFal, provider: FalProvider, fault: Fault, expected: type[Exception]
) -> None:
    fake.faults.add(fault, times=None)
    with pytest.raises(expected) as raised:
        await provider.submit(make_job(), KeptLog())
    assert KEY not in str(raised.value)
    assert fake.creates == []


async def test_a_429_is_retried_then_accepted(fake: FakeFal, provider: FalProvider) -> None:
    fake.faults.add(Fault.RATE_LIMITED, times=1)
    log = KeptLog()
    task = await provider.submit(make_job(), log)
    assert task and len(fake.creates) == 1
    assert any("busy" in line for line in log.lines)


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (Fault.FAILED, TaskFailed),
        (Fault.EXPIRED, TaskFailed),
        (Fault.CONTENT_POLICY, ContentRefused),
    ],
)
async def test_accepted_then_failed(
    fake: FakeFal, provider: FalProvider, fault: Fault, expected: type[Exception]
) -> None:
    fake.faults.add(fault)
    log = KeptLog()
    task = await provider.submit(make_job(), log)
    with pytest.raises(expected):
        await run_to_end(provider, task, log)


async def test_cancel_removes_a_queued_request(fake: FakeFal, provider: FalProvider) -> None:
    fake.queue_seconds = 30
    task = await provider.submit(make_job(), KeptLog())
    assert await provider.cancel(task) is True
    with pytest.raises(TaskFailed):
        await run_to_end(provider, task, KeptLog())


async def test_cancel_in_progress_is_still_billed(fake: FakeFal, provider: FalProvider) -> None:
    fake.faults.add(Fault.STALL)
    task = await provider.submit(make_job(), KeptLog())
    fake.advance(1)
    assert await provider.cancel(task) is False


def test_refuses_at_creation_what_it_cannot_honour(provider: FalProvider) -> None:
    with pytest.raises(InputUnsupported):
        provider.check_input("bytedance/seedance-1.5-pro", {"prompt": "x", "seed": 2**31})
    provider.check_input("bytedance/seedance-1.5-pro", {"prompt": "x", "seed": 2**31 - 1})


async def test_webhooks_are_checked_against_the_jwks(fake: FakeFal, provider: FalProvider) -> None:
    body = json.dumps({"request_id": "r-1", "status": "OK"}).encode()
    good = CallbackRequest(fake.sign("r-1", body), body)
    assert await provider.read_callback(good) == "r-1"
    tampered = CallbackRequest(good.headers, body + b" ")
    assert await provider.read_callback(tampered) is None
    stale = CallbackRequest(fake.sign("r-1", body, timestamp=1_000_000), body)
    assert await provider.read_callback(stale) is None
    other = FakeFal(KEY, Path("/nonexistent"))  # another key pair: a forgery
    assert await provider.read_callback(CallbackRequest(other.sign("r-1", body), body)) is None
