"""The OpenAI-compatible Videos API, driven by the official `openai` package, unmodified,
against a live runbase on 127.0.0.1: real runs, real MP4s probed for the size and length
asked, real uploads, and OpenAI's error envelope for every refusal.
"""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import openai
import pytest
from compat_samples import FAST, charges, png, psnr
from openai import OpenAI
from PIL import Image

from runbase.core.seedance import SIZES
from runbase.media.images import fit_image
from runbase.media.probe import probe, read_frames
from support import SEEDANCE, LiveServer

# The SDK marks the whole Videos API deprecated (Sora's shutdown); the calls still work.
pytestmark = pytest.mark.filterwarnings("ignore:The Sora API:DeprecationWarning")

ERROR_FIELDS = {"message", "type", "param", "code"}


def sdk(server: LiveServer, key: str, **options: Any) -> OpenAI:
    return OpenAI(base_url=server.base_url + "/v1", api_key=key, **options)


def openai_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The body is OpenAI's error envelope with this status and code."""
    assert response.status_code == status, response.text
    payload: dict[str, Any] = response.json()
    assert set(payload) == {"error"} and set(payload["error"]) == ERROR_FIELDS
    assert payload["error"]["code"] == code and payload["error"]["message"]
    return payload["error"]


# --- the whole path ------------------------------------------------------------------------


@pytest.mark.parametrize(("size", "seconds"), [("864x496", "4"), ("496x864", "8")])
def test_create_poll_download_gives_the_exact_video(
    start_server: Callable[..., LiveServer], tmp_path: Path, size: str, seconds: str
) -> None:
    server = start_server()
    account = server.admin.create_account("acme", 10.0)
    key = server.admin.create_key(account, rate_limit=FAST)
    client = sdk(server, key)

    video = client.videos.create_and_poll(
        model=SEEDANCE,
        prompt="A paper boat on a pond",
        size=size,
        seconds=seconds,
        poll_interval_ms=100,
    )
    assert video.status == "completed", video.error
    assert (video.object, video.model, video.size, video.seconds) == (
        "video",
        SEEDANCE,
        size,
        seconds,
    )
    assert video.progress == 100 and video.error is None
    assert video.completed_at is not None and video.completed_at >= video.created_at
    assert video.prompt == "A paper boat on a pond"

    target = tmp_path / "video.mp4"
    client.videos.download_content(video.id).write_to_file(target)
    info = probe(target)
    width, height = (int(side) for side in size.split("x"))
    assert (info.video.width, info.video.height) == (width, height)
    assert info.video.fps == 24 and info.video.num_frames == 24 * int(seconds) + 1
    assert info.audio is not None  # Sora's videos have sound; so do ours by default

    # The same charge that POST /api/v1/runs makes for the same input, taken once.
    resolution, ratio = next(k for k, v in SIZES.items() if v == (width, height))
    native = {"prompt": "A paper boat on a pond", "resolution": resolution}
    native |= {"aspect_ratio": ratio, "duration": seconds}
    with server.client(key) as http:
        estimate = http.post("/api/v1/runs/estimate", json={"model": SEEDANCE, "input": native})
    [charge] = [entry for entry in server.admin.ledger(account) if entry.run_id == video.id]
    assert charge.kind == "charge"
    assert -charge.amount_micros == estimate.json()["costUsd"] > 0
    assert server.admin.balance(account) == 10_000_000 + charge.amount_micros
    server.admin.check_books(account)


def test_defaults_and_model_names(start_server: Callable[..., LiveServer]) -> None:
    server = start_server(workers=0)
    key = server.new_key(rate_limit=FAST)
    client = sdk(server, key)
    video = client.videos.create(prompt="A lighthouse at dusk")
    # OpenAI's defaults: sora-2, 720x1280 (our 720p 9:16), 4 seconds.
    assert (video.model, video.size, video.seconds) == (SEEDANCE, "720x1280", "4")
    assert (video.status, video.progress, video.completed_at) == ("queued", 0, None)
    assert client.videos.create(prompt="A lamp", model="sora-2-pro").model == SEEDANCE
    with pytest.raises(openai.BadRequestError) as refused:
        client.videos.create(prompt="A lamp", model="veo-3")
    assert refused.value.code == "model_not_found"
    assert refused.value.param == "model"
    assert "bytedance/seedance-1.5-pro" in refused.value.message


def test_the_model_map_is_a_setting(start_server: Callable[..., LiveServer]) -> None:
    server = start_server(workers=0, openai_model_map={"house-model": SEEDANCE})
    client = sdk(server, server.new_key(rate_limit=FAST))
    assert client.videos.create(prompt="A lamp", model="house-model").model == SEEDANCE
    with pytest.raises(openai.BadRequestError, match="sora-2"):
        client.videos.create(prompt="A lamp", model="sora-2")


# --- input_reference -----------------------------------------------------------------------


def test_an_uploaded_input_reference_is_the_first_frame(
    start_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    server = start_server(engines=["preview"])  # the engine that draws the user's image
    account = server.admin.create_account("acme", 10.0)
    key = server.admin.create_key(account, rate_limit=FAST)
    client = sdk(server, key)
    upload = png(1200, 700)
    video = client.videos.create_and_poll(
        prompt="The boat drifts, static camera",
        size="864x496",
        input_reference=("boat.png", upload, "image/png"),
        extra_body={"generate_audio": False},  # a Runbase extension, through extra_body
        poll_interval_ms=200,
    )
    assert video.status == "completed", video.error
    target = tmp_path / "video.mp4"
    target.write_bytes(client.videos.download_content(video.id).content)
    info = probe(target)
    assert (info.video.width, info.video.height, info.video.num_frames) == (864, 496, 97)
    assert not info.audio
    [first] = read_frames(target, [0])
    expected = fit_image(Image.open(io.BytesIO(upload)), 864, 496)
    assert psnr(first, expected) > 30

    thumbnail = client.videos.download_content(video.id, variant="thumbnail").content
    jpeg = Image.open(io.BytesIO(thumbnail))
    assert (jpeg.format, jpeg.size) == ("JPEG", (864, 496))
    assert psnr(np.asarray(jpeg.convert("RGB")), first) > 30
    server.admin.check_books(account)


def test_an_input_reference_url_goes_to_the_engine(
    start_server: Callable[..., LiveServer],
) -> None:
    server = start_server()
    account = server.admin.create_account("acme", 10.0)
    key = server.admin.create_key(account, rate_limit=FAST)
    client = sdk(server, key)
    good = "data:image/png;base64," + base64.b64encode(png(640, 480)).decode()
    # This SDK version uploads only files as input_reference; the object form goes through
    # extra_body (sent as an `input_reference[image_url]` form field) or a JSON body.
    video = client.videos.create_and_poll(
        prompt="A lamp",
        size="640x640",
        extra_body={"input_reference": {"image_url": good}},
        poll_interval_ms=100,
    )
    assert video.status == "completed", video.error
    with server.client(key) as http:
        reference = {"image_url": good}
        answer = http.post("/v1/videos", json={"prompt": "A lamp", "input_reference": reference})
        assert answer.status_code == 200, answer.text
        run = server.wait_for_run(key, answer.json()["id"])
        assert run["status"] == "succeeded"
        # The data URI was stored once: the run shows a link to the very image.
        [link] = run["input"]["image_urls"]
        assert http.get(link).content == base64.b64decode(good.split(",", 1)[1])
    # A URL is fetched by the engine, so a bad one fails the run, which is refunded.
    bad = "data:image/png;base64," + base64.b64encode(b"not an image").decode()
    failed = client.videos.create_and_poll(
        prompt="A lamp",
        size="640x640",
        extra_body={"input_reference": {"image_url": bad}},
        poll_interval_ms=100,
    )
    assert failed.status == "failed"
    assert failed.error is not None and failed.error.code == "invalid_image"
    assert charges(server, account, failed.id) == ["charge", "refund"]
    with pytest.raises(openai.BadRequestError, match="file_id is not supported"):
        client.videos.create(prompt="A lamp", extra_body={"input_reference": {"file_id": "f"}})
    server.admin.check_books(account)


@pytest.mark.parametrize(
    ("upload", "words"),
    [
        pytest.param(png(200, 200), "each side must be 300 to 6000 px", id="too-small"),
        pytest.param(png(1600, 400), "aspect ratio", id="too-wide"),
        pytest.param(b"%PDF-1.4 not an image", "not a supported image", id="not-an-image"),
    ],
)
def test_an_upload_that_breaks_the_image_rules_is_refused_uncharged(
    start_server: Callable[..., LiveServer], upload: bytes, words: str
) -> None:
    server = start_server(workers=0)
    account = server.admin.create_account("acme", 10.0)
    client = sdk(server, server.admin.create_key(account, rate_limit=FAST))
    with pytest.raises(openai.BadRequestError) as refused:
        client.videos.create(
            prompt="A lamp", size="864x496", input_reference=("x.png", upload, "image/png")
        )
    error = refused.value
    assert (error.code, error.param) == ("invalid_image", "input_reference")
    assert words in error.message and "input_reference" in error.message
    assert server.admin.runs() == [] and server.admin.balance(account) == 10_000_000


def test_an_upload_past_the_image_limit_is_413(start_server: Callable[..., LiveServer]) -> None:
    server = start_server(workers=0)
    client = sdk(server, server.new_key(rate_limit=FAST), max_retries=0)
    with pytest.raises(openai.APIStatusError) as refused:
        huge = b"\0" * (31 * 1024 * 1024)
        client.videos.create(prompt="A lamp", input_reference=("x.png", huge, "image/png"))
    assert refused.value.status_code == 413 and refused.value.code == "request_too_large"
    assert "up to 30 MB" in refused.value.message
    assert server.admin.runs() == []


# --- refusals in OpenAI's envelope ---------------------------------------------------------


def test_unsupported_sizes_and_seconds_are_400s_naming_what_is_allowed(
    start_server: Callable[..., LiveServer],
) -> None:
    server = start_server(workers=0)
    key = server.new_key(rate_limit=FAST)
    client = sdk(server, key)
    with pytest.raises(openai.BadRequestError) as refused:
        client.videos.create(prompt="A lamp", size="1792x1024")
    assert refused.value.param == "size" and refused.value.code == "invalid_value"
    for size in ("864x496", "1280x720", "1920x1080", "2206x946"):
        assert size in refused.value.message
    with pytest.raises(openai.BadRequestError) as refused:
        client.videos.create(prompt="A lamp", seconds="5")  # type: ignore[arg-type]
    assert refused.value.param == "seconds" and "4, 8, 12" in refused.value.message
    with pytest.raises(openai.BadRequestError) as refused:
        client.videos.create(prompt="A lamp", extra_body={"quality": "hd"})
    assert (refused.value.param, refused.value.code) == ("quality", "unknown_parameter")
    with pytest.raises(openai.BadRequestError) as refused:
        client.videos.create(prompt="x" * 2001)
    assert refused.value.param == "prompt" and refused.value.code == "invalid_input"
    # The raw answers: OpenAI's envelope, as JSON bodies too.
    with server.client(key) as http:
        error = openai_error(
            http.post("/v1/videos", json={"prompt": "A", "size": "9x9"}), 400, "invalid_value"
        )
        assert error["type"] == "invalid_request_error" and error["param"] == "size"
        error = openai_error(
            http.post("/v1/videos", json={"size": "864x496"}), 400, "missing_required_parameter"
        )
        assert error["param"] == "prompt"
        for field, value in [("size", ["864x496"]), ("seconds", 5), ("model", {"a": 1})]:
            answer = http.post("/v1/videos", json={"prompt": "A", field: value})
            assert openai_error(answer, 400, answer.json()["error"]["code"])["param"] == field
        answer = http.post("/v1/videos", json={"prompt": "A", "seed": "many"})
        assert openai_error(answer, 400, "invalid_input")["param"] == "seed"
        openai_error(
            http.post("/v1/videos", content=b"{", headers={"Content-Type": "application/json"}),
            400,
            "invalid_json",
        )
        openai_error(http.post("/v1/videos", content=b"prompt=A"), 400, "unsupported_content_type")
    assert server.admin.runs() == []


def test_keys_and_ids_are_checked(start_server: Callable[..., LiveServer]) -> None:
    server = start_server(workers=0)
    key = server.new_key(rate_limit=FAST)
    with pytest.raises(openai.AuthenticationError) as refused:
        sdk(server, "sk-not-a-real-key").videos.list()
    assert refused.value.code == "invalid_api_key"
    client = sdk(server, key)
    with pytest.raises(openai.NotFoundError) as missing:
        client.videos.retrieve("run_nope")
    assert missing.value.code == "video_not_found" and "run_nope" in missing.value.message
    with pytest.raises(openai.NotFoundError):
        client.videos.download_content("run_nope")
    with pytest.raises(openai.NotFoundError):
        client.videos.delete("run_nope")
    # Another account's video is missing too, never forbidden.
    theirs = sdk(server, server.new_key(rate_limit=FAST)).videos.create(prompt="A lamp")
    with pytest.raises(openai.NotFoundError):
        client.videos.retrieve(theirs.id)
    with httpx.Client(base_url=server.base_url) as http:
        openai_error(http.get("/v1/videos"), 401, "missing_api_key")
        # Every other route keeps the Runbase envelope.
        answer = http.get("/v1/runs/run_nope", headers={"Authorization": f"Bearer {key}"})
        assert answer.status_code == 404 and set(answer.json()["error"]) == {"message", "code"}


def test_no_money_is_insufficient_quota_and_not_retried(
    start_server: Callable[..., LiveServer],
) -> None:
    server = start_server(workers=0)
    account = server.admin.create_account("broke", 0.0)
    key = server.admin.create_key(account, rate_limit=FAST)
    with pytest.raises(openai.RateLimitError) as refused:
        sdk(server, key).videos.with_raw_response.create(prompt="A lamp", size="864x496")
    assert refused.value.code == "insufficient_quota"
    assert refused.value.type == "insufficient_quota"
    assert refused.value.response.headers["x-should-retry"] == "false"
    assert server.admin.runs() == [] and server.admin.ledger(account) == []


def test_the_rate_limit_answers_retry_after_and_the_sdk_waits(
    start_server: Callable[..., LiveServer],
) -> None:
    server = start_server(workers=0)
    key = server.new_key(rate_limit="2/2seconds")
    impatient = sdk(server, key, max_retries=0)
    impatient.videos.list()
    impatient.videos.list()
    with pytest.raises(openai.RateLimitError) as limited:
        impatient.videos.list()
    assert limited.value.code == "rate_limit_exceeded"
    assert int(limited.value.response.headers["Retry-After"]) >= 1
    # The SDK's own retry honours Retry-After and gets through.
    patient = sdk(server, key, max_retries=3)
    answer = patient.videos.with_raw_response.list()
    assert answer.retries_taken >= 1 and answer.parse().data == []


# --- content, delete, failures, list -------------------------------------------------------


def test_content_of_an_unfinished_video_is_a_conflict(
    start_server: Callable[..., LiveServer],
) -> None:
    server = start_server(workers=0)
    client = sdk(server, server.new_key(rate_limit=FAST))
    video = client.videos.create(prompt="A lamp", size="864x496")
    with pytest.raises(openai.ConflictError) as conflict:
        client.videos.download_content(video.id)
    assert conflict.value.code == "video_not_ready" and "queued" in conflict.value.message
    assert conflict.value.response.headers["x-should-retry"] == "false"
    with pytest.raises(openai.BadRequestError) as refused:
        client.videos.download_content(video.id, variant="spritesheet")
    assert refused.value.param == "variant"


def test_downloads_answer_range_requests(start_server: Callable[..., LiveServer]) -> None:
    server = start_server()
    key = server.new_key(rate_limit=FAST)
    video = sdk(server, key).videos.create_and_poll(
        prompt="A lamp", size="864x496", poll_interval_ms=100
    )
    with server.client(key) as http:
        whole = http.get(f"/v1/videos/{video.id}/content")
        part = http.get(f"/v1/videos/{video.id}/content", headers={"Range": "bytes=0-99"})
    assert whole.headers["content-type"] == "video/mp4"
    assert part.status_code == 206 and part.content == whole.content[:100]


def test_delete_cancels_and_refunds_an_unfinished_video_then_deletes_it(
    start_server: Callable[..., LiveServer],
) -> None:
    queued_server = start_server(workers=0)
    account = queued_server.admin.create_account("acme", 10.0)
    client = sdk(queued_server, queued_server.admin.create_key(account, rate_limit=FAST))
    video = client.videos.create(prompt="A lamp", size="864x496")
    deleted = client.videos.delete(video.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (video.id, "video.deleted", True)
    after = client.videos.retrieve(video.id)
    assert after.status == "failed" and after.error is not None
    assert after.error.code == "canceled"
    assert charges(queued_server, account, video.id) == ["charge", "refund"]
    # A canceled video reads as failed, so a second delete deletes it, with no second refund.
    assert client.videos.delete(video.id).deleted is True
    with pytest.raises(openai.NotFoundError):
        client.videos.retrieve(video.id)
    with pytest.raises(openai.NotFoundError):
        client.videos.delete(video.id)
    assert charges(queued_server, account, video.id) == ["charge", "refund"]
    queued_server.admin.check_books(account)
    assert queued_server.admin.balance(account) == 10_000_000


def test_delete_stops_an_in_progress_video(start_server: Callable[..., LiveServer]) -> None:
    server = start_server(engines=["engine_fixtures:SlowEngine"])
    account = server.admin.create_account("acme", 10.0)
    client = sdk(server, server.admin.create_key(account, rate_limit=FAST))
    video = client.videos.create(prompt="A lamp", size="864x496")
    deadline = time.monotonic() + 30
    while client.videos.retrieve(video.id).status != "in_progress":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert client.videos.delete(video.id).deleted is True
    assert client.videos.retrieve(video.id).error.code == "canceled"  # type: ignore[union-attr]
    server.admin.check_books(account)


def test_delete_hides_a_completed_video_and_keeps_its_run(
    start_server: Callable[..., LiveServer],
) -> None:
    server = start_server()
    account = server.admin.create_account("acme", 10.0)
    key = server.admin.create_key(account, rate_limit=FAST)
    client = sdk(server, key)
    done = client.videos.create_and_poll(prompt="A lamp", size="864x496", poll_interval_ms=100)
    kept = client.videos.create_and_poll(prompt="A lamp", size="864x496", poll_interval_ms=100)
    assert done.status == kept.status == "completed"
    deleted = client.videos.delete(done.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (done.id, "video.deleted", True)
    with pytest.raises(openai.NotFoundError) as missing:
        client.videos.retrieve(done.id)
    assert missing.value.code == "video_not_found"
    with pytest.raises(openai.NotFoundError):
        client.videos.download_content(done.id)
    assert [video.id for video in client.videos.list()] == [kept.id]
    # A deleted video still marks its place as a page's `after`.
    assert [video.id for video in client.videos.list(after=done.id, order="asc")] == [kept.id]
    with pytest.raises(openai.NotFoundError):  # deleted already
        client.videos.delete(done.id)
    # Concurrent deletes: exactly one deletes, the others find nothing.
    with server.client(key) as http, ThreadPoolExecutor(6) as pool:
        statuses = list(
            pool.map(lambda _: http.delete(f"/v1/videos/{kept.id}").status_code, "123456")
        )
    assert sorted(statuses) == [200, 404, 404, 404, 404, 404]
    # Deleted for the ModelArk-compatible API too; the Runbase API keeps the run, charged once.
    with server.client(key) as http:
        assert http.get(f"/api/v3/contents/generations/tasks/{done.id}").status_code == 404
        run = http.get(f"/api/v1/runs/{done.id}").json()
        assert httpx.get(run["output"]["urls"][0], timeout=30).status_code == 200
    assert run["status"] == "succeeded"
    assert charges(server, account, done.id) == ["charge"]


def test_failed_videos_are_refunded(start_server: Callable[..., LiveServer]) -> None:
    server = start_server(engines=["engine_fixtures:FailingEngine"])
    account = server.admin.create_account("acme", 10.0)
    live = sdk(server, server.admin.create_key(account, rate_limit=FAST))
    video = live.videos.create_and_poll(prompt="A lamp", size="864x496", poll_interval_ms=100)
    assert video.status == "failed" and video.error is not None
    assert video.error.code == "generation_failed" and "refused" in video.error.message
    assert video.completed_at is not None
    assert charges(server, account, video.id) == ["charge", "refund"]
    # A test key's failure marker fails the run on purpose, through the same path.
    test = sdk(server, server.admin.create_key(account, is_test=True, rate_limit=FAST))
    marked = test.videos.create_and_poll(
        prompt="A lamp [fail:timeout]", size="864x496", poll_interval_ms=100
    )
    assert marked.status == "failed" and marked.error is not None
    assert marked.error.code == "timeout"
    assert charges(server, account, marked.id) == ["charge", "refund"]
    server.admin.check_books(account)
    assert server.admin.balance(account) == 10_000_000
    assert live.videos.delete(video.id).deleted is True  # a failed video can be deleted
    # Test and live apart: each key lists only its own mode's videos.
    assert list(live.videos.list()) == []
    assert [listed.id for listed in test.videos.list()] == [marked.id]


def test_list_pages_through_every_video(start_server: Callable[..., LiveServer]) -> None:
    server = start_server(workers=0)
    key = server.new_key(rate_limit=FAST)
    client = sdk(server, key)
    made = [client.videos.create(prompt=f"Lamp {n}", size="864x496").id for n in range(4)]
    with server.client(key) as http:  # a run made through the Runbase API is a video too
        native = http.post("/api/v1/runs", json={"model": SEEDANCE, "input": {"prompt": "x"}})
    made.append(native.json()["id"])
    first = client.videos.list(limit=2)
    assert [v.id for v in first.data] == made[::-1][:2] and first.has_more is True
    assert first.last_id == made[-2]
    newest_first = [video.id for video in client.videos.list(limit=2)]  # auto-pagination
    assert newest_first == made[::-1]
    oldest_first = [video.id for video in client.videos.list(limit=3, order="asc")]
    assert oldest_first == made
    last = client.videos.list(limit=10, after=made[1])
    assert [v.id for v in last.data] == made[:1] and last.has_more is False
    with server.client(key) as http:
        page = http.get("/v1/videos", params={"limit": 2}).json()
        assert page["object"] == "list" and page["first_id"] == made[-1]
        openai_error(http.get("/v1/videos", params={"limit": 0}), 400, "invalid_value")
        openai_error(http.get("/v1/videos", params={"after": "run_nope"}), 400, "invalid_value")
