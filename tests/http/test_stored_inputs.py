"""Images sent inside a create are stored once, over real HTTP: the run object shows a
signed link in their place (a poll stays a few kilobytes), and the engine still gets each
data URI character for character as it was sent, on every surface that takes one.
"""

from __future__ import annotations

import base64
import hashlib
import io
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from PIL import Image

from support import SEEDANCE, LiveServer

FAST = "100000/second"
ECHO = {"engines": ["engine_fixtures:InputEchoEngine"]}


def noise_png(width: int = 1500, height: int = 1200) -> bytes:
    """A PNG that does not compress: several megabytes."""
    pixels = np.random.default_rng(7).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def data_uri(image: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(image).decode()


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def echoed(run: dict[str, Any]) -> list[str]:
    """The hashes of what the engine received as `image_urls`, from its log lines."""
    prefix = "image_urls sha256 "
    return [line.removeprefix(prefix) for line in run["logs"] if line.startswith(prefix)]


@pytest.fixture
def image() -> bytes:
    return noise_png()


def test_a_data_uri_is_stored_once_and_the_engine_gets_it_exactly(
    start_server: Callable[..., LiveServer], image: bytes
) -> None:
    server = start_server(**ECHO)
    account = server.admin.create_account("acme", 10.0)
    key = server.admin.create_key(account, rate_limit=FAST)
    uri = data_uri(image)
    assert len(uri) > 5_000_000
    body = {"model": SEEDANCE, "input": {"prompt": "A lamp", "image_urls": [uri]}}
    with server.client(key) as client:
        created = client.post("/api/v1/runs", json=body, headers={"Idempotency-Key": "once"})
        assert created.status_code == 200, created.text
        assert len(created.content) < 4096
        run_id = created.json()["id"]
        done = server.wait_for_run(key, run_id)
        assert done["status"] == "succeeded", done
        poll = client.get(f"/api/v1/runs/{run_id}")
        assert len(poll.content) < 4096  # not the 7 MB it would be inline
        [link] = poll.json()["input"]["image_urls"]
        assert link.startswith(server.base_url + "/files/inputs/")
        served = client.get(link)
        assert served.content == image and served.headers["content-type"] == "image/png"
        # The same key and body replay the first run: the hash is the body's, as sent.
        again = client.post("/api/v1/runs", json=body, headers={"Idempotency-Key": "once"})
        assert again.headers["idempotent-replayed"] == "true" and again.json()["id"] == run_id
        listed = client.get("/api/v1/runs").json()["data"]
        [listed_link] = listed[0]["input"]["image_urls"]  # signed anew: the expiry moves on
        assert len(listed) == 1 and listed_link.split("?")[0] == link.split("?")[0]
    assert echoed(done) == [sha256(uri)]
    # Stored once: one file, named by its content.
    stored = list((server.settings.outputs_dir / "inputs").iterdir())
    assert [path.name for path in stored] == [hashlib.sha256(image).hexdigest() + ".png"]
    server.admin.check_books(account)


def test_a_data_uri_that_is_not_canonical_base64_stays_as_sent(
    start_server: Callable[..., LiveServer], image: bytes
) -> None:
    server = start_server(**ECHO)
    key = server.new_key(rate_limit=FAST)
    small = noise_png(320, 320)
    encoded = base64.b64encode(small).decode()
    wrapped = "data:image/png;base64," + "\n".join(
        encoded[i : i + 76] for i in range(0, len(encoded), 76)
    )
    body = {"model": SEEDANCE, "input": {"prompt": "A lamp", "image_urls": [wrapped]}}
    with server.client(key) as client:
        run_id = client.post("/api/v1/runs", json=body).json()["id"]
    done = server.wait_for_run(key, run_id)
    assert done["input"]["image_urls"] == [wrapped] and echoed(done) == [sha256(wrapped)]


def test_uploads_and_compatible_surfaces_store_their_images_too(
    start_server: Callable[..., LiveServer], image: bytes
) -> None:
    server = start_server(**ECHO)
    account = server.admin.create_account("acme", 10.0)
    key = server.admin.create_key(account, rate_limit=FAST)
    with server.client(key) as client:
        video = client.post(
            "/v1/videos",
            data={"prompt": "A lamp", "size": "1280x720"},
            files={"input_reference": ("frame.png", image, "image/png")},
        )
        assert video.status_code == 200, video.text
        task = client.post(
            "/api/v3/contents/generations/tasks",
            json={
                "model": "seedance-1-5-pro-251215",
                "content": [
                    {"type": "text", "text": "A lamp"},
                    {"type": "image_url", "image_url": {"url": data_uri(image)}},
                ],
            },
        )
        assert task.status_code == 200, task.text
    for run_id in (video.json()["id"], task.json()["id"]):
        done = server.wait_for_run(key, run_id)
        assert done["status"] == "succeeded", done
        [link] = done["input"]["image_urls"]
        assert "/files/inputs/" in link
        # An upload becomes the data URI of its own bytes, which is what the engine gets.
        assert echoed(done) == [sha256(data_uri(image))]
    server.admin.check_books(account)
