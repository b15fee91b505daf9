"""The ModelArk-compatible tasks API, driven by the official BytePlus and Volcengine SDKs,
unmodified, against a live runbase on 127.0.0.1: real runs, real MP4s probed for the size
and length asked, images served over local HTTP, and ModelArk's error envelope for every
refusal.
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from byteplussdkarkruntime import Ark
from byteplussdkarkruntime._exceptions import (
    ArkAuthenticationError,
    ArkBadRequestError,
    ArkConflictError,
    ArkNotFoundError,
    ArkPermissionDeniedError,
    ArkRateLimitError,
)
from compat_samples import FAST, charges, png, psnr
from PIL import Image

from runbase.media.images import fit_image
from runbase.media.probe import probe, read_frames
from support import SEEDANCE, LiveServer

MODEL = "seedance-1-5-pro-251215"
FINAL = ("succeeded", "failed", "cancelled")
ERROR_FIELDS = {"code", "message", "param", "type"}


def ark(server: LiveServer, key: str, **options: Any) -> Ark:
    return Ark(base_url=server.base_url + "/api/v3", api_key=key, **options)


def text(prompt: str) -> dict[str, Any]:
    return {"type": "text", "text": prompt}


def image(url: str, role: str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {"type": "image_url", "image_url": {"url": url}}
    if role is not None:
        item["role"] = role
    return item


def wait_task(client: Any, task_id: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        task = client.content_generation.tasks.get(task_id=task_id)
        if task.status in FINAL:
            return task
        assert time.monotonic() < deadline, f"task {task_id} still {task.status}"
        time.sleep(0.1)


def download(url: str, target: Path) -> Path:
    answer = httpx.get(url, timeout=30)
    assert answer.status_code == 200 and answer.headers["content-type"] == "video/mp4"
    target.write_bytes(answer.content)
    return target


@pytest.fixture
def images() -> Iterator[Callable[[str, bytes], str]]:
    """A local HTTP server for images: `publish(name, data)` answers its URL."""
    files: dict[str, bytes] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            data = files.get(self.path.lstrip("/"))
            self.send_response(200 if data is not None else 404)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(data or b"")))
            self.end_headers()
            self.wfile.write(data or b"")

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def publish(name: str, data: bytes) -> str:
        files[name] = data
        return f"http://127.0.0.1:{server.server_address[1]}/{name}"

    yield publish
    server.shutdown()
    server.server_close()


# --- the whole path ------------------------------------------------------------------------


def test_text_to_video_gives_the_exact_video_and_charges_once(
    start_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    server = start_server()
    account = server.admin.create_account("acme", 10.0)
    key = server.admin.create_key(account, rate_limit=FAST)
    client = ark(server, key)
    created = client.content_generation.tasks.create(
        model=MODEL,
        content=[text("A paper boat on a pond")],
        resolution="480p",
        ratio="16:9",
        duration=4,
        seed=42,
        camera_fixed=True,
    )
    assert created.id.startswith("run_")
    task = wait_task(client, created.id)
    assert task.status == "succeeded", task.error
    assert (task.id, task.model, task.resolution, task.ratio) == (
        created.id,
        SEEDANCE,
        "480p",
        "16:9",
    )
    assert (task.duration, task.framespersecond, task.seed) == (4, 24, 42)
    assert task.generate_audio is True and task.error is None
    assert task.updated_at >= task.created_at > time.time() - 120
    assert task.usage.completion_tokens == 864 * 496 * 24 * 4 // 1024

    info = probe(download(task.content.video_url, tmp_path / "video.mp4"))
    assert (info.video.width, info.video.height) == (864, 496)
    assert info.video.fps == 24 and info.video.num_frames == 97
    assert info.audio is not None

    # The run is an ordinary run, charged once what POST /api/v1/runs charges.
    native = {"prompt": "A paper boat on a pond", "resolution": "480p", "aspect_ratio": "16:9"}
    native |= {"duration": "4", "seed": 42, "camera_fixed": True}
    with server.client(key) as http:
        run = http.get(f"/api/v1/runs/{created.id}").json()
        estimate = http.post("/api/v1/runs/estimate", json={"model": SEEDANCE, "input": native})
    assert run["input"] == {**native, "generate_audio": True, "image_urls": []}
    [charge] = [entry for entry in server.admin.ledger(account) if entry.run_id == created.id]
    assert charge.kind == "charge" and -charge.amount_micros == estimate.json()["costUsd"] > 0
    assert server.admin.balance(account) == 10_000_000 + charge.amount_micros
    server.admin.check_books(account)


def test_text_commands_are_read_and_win_over_the_fields(
    start_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    server = start_server()
    key = server.new_key(rate_limit=FAST)
    client = ark(server, key)
    created = client.content_generation.tasks.create(
        model="bytedance/seedance-1.5-pro",
        content=[text("A lamp  --rs 480p --rt 9:16 --dur 8 --seed 7 --cf true --wm false")],
        resolution="720p",  # the text's --rs wins
        ratio="16:9",
        generate_audio=False,
    )
    task = wait_task(client, created.id)
    assert (task.resolution, task.ratio, task.duration, task.seed) == ("480p", "9:16", 8, 7)
    info = probe(download(task.content.video_url, tmp_path / "video.mp4"))
    assert (info.video.width, info.video.height, info.video.num_frames) == (496, 864, 193)
    assert not info.audio
    with server.client(key) as http:
        run = http.get(f"/api/v1/runs/{created.id}").json()
    assert run["input"]["prompt"] == "A lamp"  # the commands are not part of the prompt
    assert run["input"]["camera_fixed"] is True
    # `frames` (97 = 4 s) wins over `duration`, as on ModelArk; `--fps 24` is the only rate.
    again = client.content_generation.tasks.create(
        model=MODEL,
        content=[text("A lamp --fps 24")],
        resolution="480p",
        duration=12,
        frames=97,
        generate_audio=False,
    )
    assert wait_task(client, again.id).duration == 4


def test_first_frame_image_to_video(
    start_server: Callable[..., LiveServer],
    tmp_path: Path,
    images: Callable[[str, bytes], str],
) -> None:
    server = start_server(engines=["preview"])  # the engine that draws the user's image
    account = server.admin.create_account("acme", 10.0)
    client = ark(server, server.admin.create_key(account, rate_limit=FAST))
    first = png(1200, 700, (200, 40, 40))
    created = client.content_generation.tasks.create(
        model=MODEL,
        content=[text("The boat drifts"), image(images("first.png", first))],  # no role
        resolution="480p",
        duration=4,
        generate_audio=False,
    )
    task = wait_task(client, created.id, timeout=120)
    assert task.status == "succeeded", task.error
    assert task.ratio == "adaptive"  # picked from the image: 1200x700 is nearest 16:9
    video = download(task.content.video_url, tmp_path / "video.mp4")
    info = probe(video)
    assert (info.video.width, info.video.height, info.video.num_frames) == (864, 496, 97)
    [frame] = read_frames(video, [0])
    assert psnr(frame, fit_image(Image.open(io.BytesIO(first)), 864, 496)) > 30
    server.admin.check_books(account)


def test_first_and_last_frame_image_to_video(
    start_server: Callable[..., LiveServer],
    tmp_path: Path,
    images: Callable[[str, bytes], str],
) -> None:
    server = start_server(engines=["preview"])
    client = ark(server, server.new_key(rate_limit=FAST))
    first, last = png(800, 800, (200, 40, 40)), png(800, 800, (30, 30, 220))
    created = client.content_generation.tasks.create(
        model=MODEL,
        content=[
            image(images("last.png", last), "last_frame"),  # the order of items does not matter
            text("The block changes colour"),
            image(images("first.png", first), "first_frame"),
        ],
        resolution="480p",
        ratio="1:1",
        duration=4,
        generate_audio=False,
    )
    task = wait_task(client, created.id, timeout=120)
    assert task.status == "succeeded", task.error
    video = download(task.content.video_url, tmp_path / "video.mp4")
    info = probe(video)
    assert (info.video.width, info.video.height, info.video.num_frames) == (640, 640, 97)
    opening, ending = read_frames(video, [0, 96])
    assert psnr(opening, fit_image(Image.open(io.BytesIO(first)), 640, 640)) > 30
    assert psnr(ending, fit_image(Image.open(io.BytesIO(last)), 640, 640)) > 30


def test_the_volcengine_sdk_round_trip(
    start_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    from volcenginesdkarkruntime import Ark as VolcengineArk

    server = start_server()
    key = server.new_key(rate_limit=FAST)
    client = VolcengineArk(base_url=server.base_url + "/api/v3", api_key=key)
    created = client.content_generation.tasks.create(
        model="doubao-seedance-1-5-pro-251215",
        content=[text("A lighthouse at dusk --rs 480p --rt 4:3 --dur 4")],
        generate_audio=False,
    )
    task = wait_task(client, created.id)
    assert task.status == "succeeded" and task.usage.total_tokens == 752 * 560 * 24 * 4 // 1024
    info = probe(download(task.content.video_url, tmp_path / "video.mp4"))
    assert (info.video.width, info.video.height, info.video.num_frames) == (752, 560, 97)


# --- refusals ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "param", "words"),
    [
        ({"ratio": "2:1"}, "ratio", "not one of 16:9"),
        ({"duration": 5}, "duration", "supported: 4, 8, 12, -1"),
        ({"content": [text("A lamp --dur 6")]}, "duration", "text command `--dur`"),
        ({"content": [text("A lamp --rt 9:21")]}, "ratio", "9:21"),
        ({"resolution": "4k"}, "resolution", "480p, 720p, 1080p"),
        ({"frames": 100}, "frames", "97, 193, 289"),
        ({"seed": -2}, "seed", "-1 (random)"),
        ({"camera_fixed": "yes"}, "camera_fixed", "true or false"),
        ({"watermark": True}, "watermark", "watermarks are not supported"),
        ({"content": [text("A lamp --wm true")]}, "watermark", "not supported"),
        ({"return_last_frame": True}, "return_last_frame", "only False"),
        ({"service_tier": "flex"}, "service_tier", "only 'default'"),
        ({"draft": True}, "draft", "only False"),
        ({"execution_expires_after": 60}, "execution_expires_after", "3600 to 259200"),
        ({"content": [text("--dur 4")]}, "content.text", "missing a text prompt"),
        ({"content": [image("https://example.com/a.png")]}, "content.text", "missing a text"),
        ({"content": []}, "content", "missing `content`"),
        (
            {"content": [text("x"), image("https://e.com/a.png"), image("https://e.com/b.png")]},
            "content",
            "role must be specified for image contents",
        ),
        (
            {"content": [text("x"), image("https://e.com/a.png", "reference_image")]},
            "content.role",
            "use first_frame or last_frame",
        ),
        (
            {"content": [text("x"), image("https://e.com/a.png", "last_frame")]},
            "content.role",
            "needs a first_frame",
        ),
        ({"content": [text("x"), image("asset://abc")]}, "content.image_url.url", "asset://"),
        ({"content": [text("x" * 2001)]}, "content.text", "at most 2000"),
    ],
)
def test_parameters_we_cannot_honour_are_modelark_400s_and_cost_nothing(
    start_server: Callable[..., LiveServer], fields: dict[str, Any], param: str, words: str
) -> None:
    server = start_server(workers=0)
    account = server.admin.create_account("acme", 10.0)
    client = ark(server, server.admin.create_key(account, rate_limit=FAST), max_retries=0)
    arguments = {"model": MODEL, "content": [text("A lamp")], "resolution": "480p", **fields}
    with pytest.raises(ArkBadRequestError) as refused:
        client.content_generation.tasks.create(**arguments)
    error = refused.value
    assert error.code in ("InvalidParameter", "MissingParameter")
    assert error.param == param and error.type == "BadRequest"
    assert words in error.message and "Request id: " in error.message
    assert server.admin.runs() == [] and server.admin.balance(account) == 10_000_000


def test_the_model_and_the_body_are_checked(start_server: Callable[..., LiveServer]) -> None:
    server = start_server(workers=0)
    key = server.new_key(rate_limit=FAST)
    client = ark(server, key, max_retries=0)
    with pytest.raises(ArkNotFoundError) as unknown:
        client.content_generation.tasks.create(model="seedance-1-0-pro-250528", content=[text("x")])
    assert unknown.value.code == "InvalidEndpointOrModel.NotFound"
    assert unknown.value.param == "model" and MODEL in unknown.value.message
    with httpx.Client(base_url=server.base_url + "/api/v3") as http:
        headers = {"Authorization": f"Bearer {key}", "X-Client-Request-Id": "abc-123"}
        for body, code in [
            (b"{not json", "InvalidParameter"),
            (b"[1, 2]", "InvalidParameter"),
            (b'{"content": [{"type": "text", "text": "x"}]}', "MissingParameter"),
            (b'{"model": "%s", "content": [], "fps": 24}' % MODEL.encode(), "InvalidParameter"),
        ]:
            answer = http.post("/contents/generations/tasks", content=body, headers=headers)
            assert answer.status_code == 400, answer.text
            assert set(answer.json()) == {"error"} and set(answer.json()["error"]) == ERROR_FIELDS
            assert answer.json()["error"]["code"] == code
            assert answer.headers["X-Client-Request-Id"] == "abc-123"
            assert answer.json()["error"]["message"].endswith(answer.headers["X-Request-Id"])


def test_keys_and_task_ids_are_checked(start_server: Callable[..., LiveServer]) -> None:
    server = start_server(workers=0)
    key = server.new_key(rate_limit=FAST)
    with pytest.raises(ArkAuthenticationError) as refused:
        ark(server, "sk-not-a-real-key", max_retries=0).content_generation.tasks.list()
    assert refused.value.code == "AuthenticationError" and refused.value.type == "Unauthorized"
    client = ark(server, key, max_retries=0)
    with pytest.raises(ArkNotFoundError) as missing:
        client.content_generation.tasks.get(task_id="run_nope")
    assert missing.value.code == "ResourceNotFound" and "run_nope" in missing.value.message
    with pytest.raises(ArkNotFoundError):
        client.content_generation.tasks.delete("run_nope")
    # Another account's task is missing too, never forbidden.
    theirs = ark(server, server.new_key(rate_limit=FAST)).content_generation.tasks.create(
        model=MODEL, content=[text("A lamp")]
    )
    with pytest.raises(ArkNotFoundError):
        client.content_generation.tasks.get(task_id=theirs.id)
    with httpx.Client(base_url=server.base_url) as http:
        answer = http.get("/api/v3/contents/generations/tasks")
        assert answer.status_code == 401 and answer.json()["error"]["code"] == "AuthenticationError"
        # Every other route keeps the Runbase envelope.
        answer = http.get("/api/v1/runs/run_nope", headers={"Authorization": f"Bearer {key}"})
        assert answer.status_code == 404 and set(answer.json()["error"]) == {"message", "code"}


def test_money_and_rate_limits(start_server: Callable[..., LiveServer]) -> None:
    server = start_server(workers=0)
    broke = server.admin.create_account("broke", 0.0)
    client = ark(server, server.admin.create_key(broke, rate_limit=FAST))
    with pytest.raises(ArkPermissionDeniedError) as refused:
        client.content_generation.tasks.create(model=MODEL, content=[text("A lamp")])
    assert refused.value.code == "AccountOverdueError"
    assert server.admin.runs() == [] and server.admin.balance(broke) == 0

    account = server.admin.create_account("acme", 10.0)
    capped = ark(server, server.admin.create_key(account, spend_limit_cents=1, rate_limit=FAST))
    with pytest.raises(ArkPermissionDeniedError) as refused:
        capped.content_generation.tasks.create(model=MODEL, content=[text("A lamp")])
    assert refused.value.code == "SetLimitExceeded"
    quota = server.admin.create_key(account, daily_run_quota=1, rate_limit=FAST)
    once = ark(server, quota, max_retries=0)
    once.content_generation.tasks.create(model=MODEL, content=[text("A lamp")])
    with pytest.raises(ArkRateLimitError) as spent:
        once.content_generation.tasks.create(model=MODEL, content=[text("A lamp")])
    assert spent.value.code == "QuotaExceeded"
    assert spent.value.response.headers["x-should-retry"] == "false"
    assert len(server.admin.runs()) == 1
    server.admin.check_books(account)

    impatient = ark(server, server.new_key(rate_limit="2/2seconds"), max_retries=0)
    impatient.content_generation.tasks.list()
    impatient.content_generation.tasks.list()
    with pytest.raises(ArkRateLimitError) as limited:
        impatient.content_generation.tasks.list()
    assert limited.value.code == "RateLimitExceeded"
    assert int(limited.value.response.headers["Retry-After"]) >= 1


# --- delete, failures, list ----------------------------------------------------------------


def test_delete_cancels_a_queued_task_and_refunds_it(
    start_server: Callable[..., LiveServer],
) -> None:
    server = start_server(workers=0)
    account = server.admin.create_account("acme", 10.0)
    client = ark(server, server.admin.create_key(account, rate_limit=FAST), max_retries=0)
    created = client.content_generation.tasks.create(model=MODEL, content=[text("A lamp")])
    assert client.content_generation.tasks.get(task_id=created.id).status == "queued"
    client.content_generation.tasks.delete(created.id)
    task = client.content_generation.tasks.get(task_id=created.id)
    assert task.status == "cancelled" and task.error.code == "canceled"
    assert charges(server, account, created.id) == ["charge", "refund"]
    with pytest.raises(ArkConflictError) as again:  # a cancelled task cannot be deleted
        client.content_generation.tasks.delete(created.id)
    assert again.value.code == "InvalidAction.TaskStatus"
    assert again.value.response.headers["x-should-retry"] == "false"
    server.admin.check_books(account)
    assert server.admin.balance(account) == 10_000_000


def test_a_running_task_cannot_be_cancelled_and_a_finished_one_is_deleted(
    start_server: Callable[..., LiveServer],
) -> None:
    server = start_server(engines=["engine_fixtures:SlowEngine"])
    account = server.admin.create_account("acme", 10.0)
    key = server.admin.create_key(account, rate_limit=FAST)
    client = ark(server, key, max_retries=0)
    created = client.content_generation.tasks.create(
        model=MODEL, content=[text("A lamp")], resolution="480p", generate_audio=False
    )
    deadline = time.monotonic() + 30
    while client.content_generation.tasks.get(task_id=created.id).status != "running":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    with pytest.raises(ArkConflictError) as refused:
        client.content_generation.tasks.delete(created.id)
    assert "running" in refused.value.message
    assert wait_task(client, created.id).status == "succeeded"  # it ran to the end

    client.content_generation.tasks.delete(created.id)
    with pytest.raises(ArkNotFoundError):
        client.content_generation.tasks.get(task_id=created.id)
    assert client.content_generation.tasks.list().total == 0
    with pytest.raises(ArkNotFoundError) as again:  # deleted already
        client.content_generation.tasks.delete(created.id)
    assert again.value.code == "ResourceNotFound"
    # Deleted for both compatible APIs: the OpenAI-compatible one cannot see it either.
    with server.client(key) as http:
        assert http.get(f"/v1/videos/{created.id}").status_code == 404
        assert http.get("/v1/videos").json()["data"] == []
        # The run stays, as the record of its charge, with its file.
        run = http.get(f"/api/v1/runs/{created.id}").json()
        listed = http.get("/api/v1/runs").json()["data"]
        assert httpx.get(run["output"]["urls"][0], timeout=30).status_code == 200
    assert run["status"] == "succeeded" and [r["id"] for r in listed] == [created.id]
    assert charges(server, account, created.id) == ["charge"]


def test_failed_tasks_are_refunded_once(start_server: Callable[..., LiveServer]) -> None:
    server = start_server(engines=["engine_fixtures:FailingEngine"])
    account = server.admin.create_account("acme", 10.0)
    client = ark(server, server.admin.create_key(account, rate_limit=FAST))
    created = client.content_generation.tasks.create(model=MODEL, content=[text("A lamp")])
    task = wait_task(client, created.id)
    assert task.status == "failed" and task.error.code == "generation_failed"
    assert task.error.message and "content" not in task.to_dict()
    assert charges(server, account, created.id) == ["charge", "refund"]
    # A test key's failure marker fails the run on purpose, through the same path.
    test = ark(server, server.admin.create_key(account, is_test=True, rate_limit=FAST))
    marked = test.content_generation.tasks.create(
        model=MODEL, content=[text("A lamp [fail:invalid_image]")], resolution="480p"
    )
    assert wait_task(test, marked.id).error.code == "invalid_image"
    assert charges(server, account, marked.id) == ["charge", "refund"]
    server.admin.check_books(account)
    assert server.admin.balance(account) == 10_000_000
    client.content_generation.tasks.delete(created.id)  # a failed task can be deleted
    assert client.content_generation.tasks.list(task_ids=[created.id]).total == 0


def test_list_filters_and_pages(start_server: Callable[..., LiveServer]) -> None:
    server = start_server(workers=0)
    key = server.new_key(rate_limit=FAST)
    client = ark(server, key, max_retries=0)
    tasks = client.content_generation.tasks
    made = [tasks.create(model=MODEL, content=[text(f"Lamp {n}")]).id for n in range(4)]
    with server.client(key) as http:  # a run made through the Runbase API is a task too
        native = http.post("/api/v1/runs", json={"model": SEEDANCE, "input": {"prompt": "x"}})
    made.append(native.json()["id"])
    newest_first = made[::-1]
    page = tasks.list(page_num=1, page_size=2)
    assert page.total == 5 and [t.id for t in page.items] == newest_first[:2]
    assert [t.id for t in tasks.list(page_num=3, page_size=2).items] == newest_first[4:]
    assert tasks.list(page_num=4, page_size=2).items == []
    assert [t.id for t in tasks.list().items] == newest_first  # page 1 of 10 by default
    picked = tasks.list(task_ids=[made[0], made[2], "run_nope"])
    assert picked.total == 2 and {t.id for t in picked.items} == {made[0], made[2]}
    assert tasks.list(task_ids=made[1]).total == 1
    tasks.delete(made[1])  # cancelled
    assert [t.id for t in tasks.list(status="cancelled").items] == [made[1]]
    assert tasks.list(status="queued").total == 4
    assert tasks.list(status="succeeded").total == 0
    assert tasks.list(status="expired").total == 0
    assert tasks.list(model="doubao-seedance-1-5-pro-251215").total == 5
    assert tasks.list(model="seedance-1-0-pro-250528").total == 0
    assert tasks.list(service_tier="flex").total == 0
    # execution_expires_after is a Cancel-After deadline on the run.
    expiring = tasks.create(model=MODEL, content=[text("A lamp")], execution_expires_after=3600)
    [run] = [run for run in server.admin.runs() if run.id == expiring.id]
    assert run.deadline_ms - run.created_ms == pytest.approx(3_600_000, abs=5_000)
    for bad in ({"status": "done"}, {"page_size": 501}):
        with pytest.raises(ArkBadRequestError) as refused:
            tasks.list(**bad)
        assert refused.value.param in ("filter.status", "page_size")


def test_a_callback_url_is_the_runs_webhook(start_server: Callable[..., LiveServer]) -> None:
    received: list[bytes] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(self.rfile.read(int(self.headers["Content-Length"])))
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    receiver = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    try:
        server = start_server(allow_private_webhook_hosts=True, webhook_http_hosts=["127.0.0.1"])
        client = ark(server, server.new_key(rate_limit=FAST))
        url = f"http://127.0.0.1:{receiver.server_address[1]}/ark-callback"
        created = client.content_generation.tasks.create(
            model=MODEL, content=[text("A lamp")], resolution="480p", callback_url=url
        )
        assert wait_task(client, created.id).status == "succeeded"
        deadline = time.monotonic() + 20
        while not any(b'"succeeded"' in body for body in received):
            assert time.monotonic() < deadline, received
            time.sleep(0.05)
        assert all(created.id.encode() in body for body in received)
    finally:
        receiver.shutdown()
        receiver.server_close()
    with pytest.raises(ArkBadRequestError) as refused:  # the webhook rules apply
        client.content_generation.tasks.create(
            model=MODEL, content=[text("A lamp")], callback_url="http://example.com/x"
        )
    assert refused.value.param == "callback_url"
    assert "callback_url must use https://" in refused.value.message
