"""The Replicate provider against the fake Replicate (tests/fakes/replicate.py): the
contract mapped to the model's input, images cropped so that the model keeps the run's
ratio, each failure class, cancel, and webhooks checked with the default secret."""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image
from provider_support import KeptLog, make_job, run_to_end
from pydantic import SecretStr

from fakes.common import FakeServer, Fault
from fakes.replicate import MODEL, FakeReplicate
from runbase.providers import (
    AttemptState,
    CallbackRequest,
    ContentRefused,
    NotAccepted,
    Pacing,
    SubmitUncertain,
    TaskFailed,
    TokenPrices,
)
from runbase.providers.replicate import ReplicateProvider

TOKEN = "r8_provider_test_token"


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeReplicate]:
    fake = FakeReplicate(TOKEN, tmp_path / "videos", starting_seconds=0.1, processing_seconds=0.1)
    server = FakeServer(fake)
    server.start()
    yield fake
    server.stop()


@pytest.fixture
async def provider(fake: FakeReplicate) -> AsyncIterator[ReplicateProvider]:
    provider = ReplicateProvider(
        api_token=SecretStr(TOKEN),
        base_url=fake.base_url,
        model=MODEL,
        prices=TokenPrices(silent=1_200_000, audio=2_400_000),
        pacing=Pacing(poll_interval_s=0.05, allow_private_hosts=True, submit_retry_s=3.0),
        allow_private_image_hosts=True,
    )
    await provider.start()
    yield provider
    await provider.close()


def png_uri(width: int, height: int) -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), "teal").save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


async def test_the_contract_in_the_models_spelling(
    fake: FakeReplicate, provider: ReplicateProvider
) -> None:
    job = make_job(aspect_ratio="9:16", duration="8", seed=5, camera_fixed=True)
    log = KeptLog()
    task = await provider.submit(job, log)
    output = await run_to_end(provider, task, log)
    assert fake.creates[0] == {
        "input": {
            "prompt": "a red fox",
            "aspect_ratio": "9:16",
            "resolution": "480p",
            "duration": 8,
            "fps": 24,
            "generate_audio": True,
            "seed": 5,
            "camera_fixed": True,
        }
    }
    # The fake writes a geometry's MP4 on its first GET: seconds on a busy machine.
    assert httpx.get(output.video_url, timeout=60).headers["content-type"] == "video/mp4"
    assert provider.cost_micros(job, output, AttemptState.SUCCEEDED) > 0
    assert provider.cost_micros(job, None, AttemptState.CANCELED) == 0


async def test_images_are_cropped_to_the_runs_ratio(
    fake: FakeReplicate, provider: ReplicateProvider
) -> None:
    # A portrait first frame for a 16:9 run: sent as is, the model would make a 9:16 video.
    job = make_job(image_urls=[png_uri(600, 1000), png_uri(1000, 600)])
    task = await provider.submit(job, KeptLog())
    assert fake.predictions[task].ratio == "16:9"
    sent = fake.creates[0]["input"]
    for name in ("image", "last_frame_image"):
        raw = base64.b64decode(sent[name].partition(",")[2])
        with Image.open(io.BytesIO(raw)) as image:
            assert image.size == (864, 496)


async def test_a_broken_image_is_the_users(
    fake: FakeReplicate, provider: ReplicateProvider
) -> None:
    with pytest.raises(ContentRefused):
        await provider.submit(make_job(image_urls=["data:image/png;base64,AAAA"]), KeptLog())
    assert fake.creates == []


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (Fault.SERVER_ERROR, NotAccepted),
        (Fault.AUTH, NotAccepted),
        (Fault.QUOTA, NotAccepted),
        (Fault.CONNECTION, SubmitUncertain),
    ],
)
async def test_refused_creates(
    fake: FakeReplicate, provider: ReplicateProvider, fault: Fault, expected: type[Exception]
) -> None:
    fake.faults.add(fault, times=None)
    with pytest.raises(expected) as raised:
        await provider.submit(make_job(), KeptLog())
    assert TOKEN not in str(raised.value)
    assert fake.creates == []


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (Fault.FAILED, TaskFailed),
        (Fault.EXPIRED, TaskFailed),
        (Fault.CONTENT_POLICY, ContentRefused),
    ],
)
async def test_accepted_then_failed(
    fake: FakeReplicate, provider: ReplicateProvider, fault: Fault, expected: type[Exception]
) -> None:
    fake.faults.add(fault)
    log = KeptLog()
    task = await provider.submit(make_job(), log)
    with pytest.raises(expected):
        await run_to_end(provider, task, log)


async def test_cancel(fake: FakeReplicate, provider: ReplicateProvider) -> None:
    fake.faults.add(Fault.STALL)
    task = await provider.submit(make_job(), KeptLog())
    assert await provider.cancel(task) is True
    assert fake.cancels == [task]
    with pytest.raises(TaskFailed):
        await run_to_end(provider, task, KeptLog())


async def test_webhooks_are_checked_with_the_default_secret(
    fake: FakeReplicate, provider: ReplicateProvider
) -> None:
    body = json.dumps({"id": "p-1", "status": "succeeded"}).encode()
    stamp = int(time.time())
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(stamp),
        "webhook-signature": fake.sign("msg_1", stamp, body),
    }
    assert await provider.read_callback(CallbackRequest(headers, body)) == "p-1"
    assert await provider.read_callback(CallbackRequest(headers, body + b" ")) is None
    forged = dict(headers, **{"webhook-signature": "v1,AAAA"})
    assert await provider.read_callback(CallbackRequest(forged, body)) is None
    old = dict(headers, **{"webhook-timestamp": str(stamp - 3600)})
    old["webhook-signature"] = fake.sign("msg_1", stamp - 3600, body)
    assert await provider.read_callback(CallbackRequest(old, body)) is None
