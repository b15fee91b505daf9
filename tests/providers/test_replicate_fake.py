"""The fake Replicate speaks Replicate's real protocol: the official `replicate` client
(unchanged, pointed at the fake with its `base_url` argument) creates, reads, waits for
and cancels predictions, fetches the webhook secret and validates a webhook with it."""

from __future__ import annotations

import base64
import io
import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import replicate
from fastapi import FastAPI, Request
from PIL import Image
from replicate.exceptions import ReplicateError

from fakes.common import FakeServer, Fault
from fakes.replicate import MODEL, FakeReplicate
from runbase.media.probe import probe

TOKEN = "r8_fake_token_0123456789"


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeReplicate]:
    fake = FakeReplicate(TOKEN, tmp_path / "videos", starting_seconds=0.2, processing_seconds=0.3)
    server = FakeServer(fake)
    server.start()
    yield fake
    server.stop()


def client(fake: FakeReplicate) -> replicate.Client:
    return replicate.Client(api_token=TOKEN, base_url=fake.base_url)


def test_official_client_creates_waits_and_downloads(fake: FakeReplicate, tmp_path: Path) -> None:
    api = client(fake)
    prediction = api.models.predictions.create(
        model=MODEL,
        input={
            "prompt": "a fox",
            "duration": 4,
            "aspect_ratio": "4:3",
            "resolution": "480p",
            "generate_audio": True,
            "seed": 7,
        },
        webhook="https://hooks.example/replicate",
        webhook_events_filter=["completed"],
    )
    assert prediction.status == "starting" and prediction.output is None
    prediction.wait()
    assert prediction.status == "succeeded" and isinstance(prediction.output, str)
    again = api.predictions.get(prediction.id)
    assert again.output == prediction.output and again.metrics
    video = tmp_path / "out.mp4"
    # The fake writes a geometry's MP4 on its first GET: seconds on a busy machine.
    video.write_bytes(httpx.get(prediction.output, timeout=60).content)
    info = probe(video)
    assert info.video is not None and info.audio
    assert (info.video.width, info.video.height, info.video.num_frames) == (752, 560, 97)
    assert fake.creates[0]["webhook_events_filter"] == ["completed"]


def test_an_image_sets_the_ratio_as_on_replicate(fake: FakeReplicate) -> None:
    buffer = io.BytesIO()
    Image.new("RGB", (90, 160), "white").save(buffer, "PNG")
    image = "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
    api = client(fake)
    prediction = api.models.predictions.create(
        model=MODEL,
        input={
            "prompt": "a fox",
            "duration": 4,
            "aspect_ratio": "16:9",
            "image": image,
            "resolution": "480p",
        },
    )
    prediction.wait()
    assert fake.predictions[prediction.id].ratio == "9:16"  # aspect_ratio was ignored


def test_official_client_sees_cancel_failures_and_refusals(fake: FakeReplicate) -> None:
    api = client(fake)
    fake.faults.add(Fault.STALL)
    stalled = api.models.predictions.create(model=MODEL, input={"prompt": "x"})
    canceled = api.predictions.cancel(stalled.id)
    assert canceled.status == "canceled"

    fake.faults.add(Fault.CONTENT_POLICY)
    refused = api.models.predictions.create(model=MODEL, input={"prompt": "x"})
    refused.wait()
    assert refused.status == "failed" and "E005" in str(refused.error)

    fake.faults.add(Fault.QUOTA)
    with pytest.raises(ReplicateError) as quota:
        api.models.predictions.create(model=MODEL, input={"prompt": "x"})
    assert quota.value.status == 402
    with pytest.raises(ReplicateError) as invalid:
        api.models.predictions.create(model=MODEL, input={"prompt": "x", "duration": "4"})
    assert invalid.value.status == 422
    assert len(fake.creates) == 2  # refused creates create nothing


class Receiver:
    """A webhook receiver on 127.0.0.1 that keeps what it is sent."""

    def __init__(self) -> None:
        self.base_url = ""
        self.received: list[tuple[dict[str, str], bytes]] = []
        self.app = FastAPI()

        @self.app.post("/hook")
        async def hook(request: Request) -> dict[str, bool]:
            self.received.append((dict(request.headers), await request.body()))
            return {"ok": True}

    def tick(self) -> None:
        pass


def test_webhook_validates_with_the_default_secret(fake: FakeReplicate) -> None:
    receiver = Receiver()
    server = FakeServer(receiver)
    server.start()
    try:
        api = client(fake)
        secret = api.webhooks.default.secret()
        api.models.predictions.create(
            model=MODEL, input={"prompt": "x"}, webhook=receiver.base_url + "/hook"
        )
        deadline = time.monotonic() + 10
        while len(receiver.received) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        server.stop()
    received = receiver.received
    assert len(received) == 2  # start and completed
    for headers, body in received:
        replicate.webhooks.validate(
            headers=headers, body=body.decode(), secret=secret, tolerance=300
        )
    assert json.loads(received[-1][1])["status"] == "succeeded"
    forged = dict(received[-1][0], **{"webhook-signature": "v1,AAAA"})
    with pytest.raises(replicate.webhook.InvalidSignatureError):
        replicate.webhooks.validate(headers=forged, body=received[-1][1].decode(), secret=secret)
