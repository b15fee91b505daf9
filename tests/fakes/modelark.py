"""A fake BytePlus ModelArk video-generation API, built from the public docs
(https://docs.byteplus.com/en/docs/ModelArk/1520757), served on 127.0.0.1 for tests.

    POST   /api/v3/contents/generations/tasks        create (validated; 400 envelopes)
    GET    /api/v3/contents/generations/tasks/{id}   get (7-day visibility)
    GET    /api/v3/contents/generations/tasks        list (filters, pagination)
    DELETE /api/v3/contents/generations/tasks/{id}   cancel a queued task / delete a finished one
    GET    /videos/{id}.mp4?expires=...              the result, until its link expires

The state of a task is a function of the fake's clock: `queued` for `queued_seconds`, then
`running` for `running_seconds` (both as set when it was created), then `succeeded` (or
the failure queued with `fail_next`), or `expired` once `execution_expires_after` has
passed. Tests move the clock with `advance` instead of sleeping. Like the real service it
reads legacy text commands (`--dur 12`, `--rs 1080p`) from the prompt and lets them
override the fields, so that an adapter that forgets to strip them makes the wrong video.

Knobs: `too_many_requests(n)` answers the next n API calls with 429; `refuse_creates(status,
code)` answers creates with an error until `refuse_creates(None)` (an outage, a bad key, an
unpaid account); `fail_next(code, message)` fails the next task; `sensitive_words` refuses
prompts at create; callbacks are POSTed on every status change, and `succeeded`/`failed`
are retried 3 times. `creates` holds every accepted create body: a test counts them to
prove a run was never submitted twice; `polls` holds (task id, time received) of every
read of a task (its GET, or a list naming it), `task_gets` and `list_requests` count the
two kinds of request, `poll_delay_seconds` makes each read answer that much later, and
`lists_refused_with` answers every list with an error status.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from fakes.common import FakeClock, VideoLibrary
from runbase.core.seedance import SIZES

MODELS = ("seedance-1-5-pro-251215", "doubao-seedance-1-5-pro-251215")
RATIOS = ("16:9", "4:3", "1:1", "3:4", "9:16", "21:9", "adaptive")
RESOLUTIONS = ("480p", "720p", "1080p")
VISIBLE_SECONDS = 7 * 24 * 3600
URL_TTL_SECONDS = 24 * 3600
_COMMAND = re.compile(r"--(resolution|rs|duration|dur)\s+(\S+)", re.IGNORECASE)


@dataclass
class Task:
    id: str
    body: dict[str, Any]
    created_at: float
    resolution: str
    ratio: str
    duration: int
    audio: bool
    queued_for: float
    running_for: float
    failure: tuple[str, str] | None = None
    cancelled_at: float | None = None
    stalled: bool = False
    deleted: bool = False
    called_back: set[str] = field(default_factory=set)


class FakeModelArk:
    def __init__(
        self,
        api_key: str,
        videos_dir: Path,
        *,
        queued_seconds: float = 0.2,
        running_seconds: float = 0.3,
        callback_timeout_seconds: float = 5.0,
    ) -> None:
        self.api_key = api_key
        self.videos_dir = videos_dir
        self.queued_seconds = queued_seconds
        self.running_seconds = running_seconds
        self.callback_timeout_seconds = callback_timeout_seconds
        self.url_ttl_seconds = URL_TTL_SECONDS
        self.clock = FakeClock()
        self.tasks: dict[str, Task] = {}
        self.creates: list[dict[str, Any]] = []
        self.polls: list[tuple[str, float]] = []
        """(task id, time) of every read of a task: its own GET, or a list naming it."""
        self.list_requests = 0
        self.task_gets = 0
        self.poll_delay_seconds = 0.0
        self.callbacks: list[tuple[str, str, int]] = []
        """(task id, status, attempt) of every callback POST made."""
        self.sensitive_words: set[str] = set()
        self._throttle = 0
        self._refusal: tuple[int, str] | None = None
        self.lists_refused_with: int | None = None
        """When set, every list request is answered with this HTTP status (an upstream
        that has no list, or refuses `filter.task_ids`)."""
        self.refused_creates = 0
        self.idempotency_header: str | None = None
        """A test extension, not ModelArk's (it takes no idempotency key): when set, a create
        carrying this header with a key seen before answers the first task's id again."""
        self._keyed: dict[str, str] = {}
        self._stall = False
        self._failures: list[tuple[str, str]] = []
        self._awaiting_callbacks: set[str] = set()
        self._callback_pool = ThreadPoolExecutor(max_workers=32, thread_name_prefix="callback")
        self._callback_client = httpx.Client(timeout=callback_timeout_seconds)  # thread-safe
        self.videos = VideoLibrary(videos_dir)
        self.base_url = ""
        self.app = self._build_app()

    # ---- knobs --------------------------------------------------------------------------

    def too_many_requests(self, count: int) -> None:
        self._throttle = count

    def refuse_creates(self, status: int | None, code: str = "InternalServiceError") -> None:
        """Answer every create with `status` and `code` (None: accept them again)."""
        self._refusal = None if status is None else (status, code)

    def fail_next(self, code: str, message: str) -> None:
        self._failures.append((code, message))

    def stall_next(self) -> None:
        """The next task stays `running` until it expires."""
        self._stall = True

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    # ---- the state machine --------------------------------------------------------------

    def status(self, task: Task) -> str:
        now = self.clock.now()
        if task.cancelled_at is not None:
            return "cancelled"
        elapsed = now - task.created_at
        done_at = task.queued_for + task.running_for
        if task.stalled:
            done_at = float("inf")
        if elapsed < done_at and elapsed >= task.body.get("execution_expires_after", 172800):
            return "expired"
        if elapsed < task.queued_for:
            return "queued"
        if elapsed < done_at:
            return "running"
        return "failed" if task.failure else "succeeded"

    def visible(self, task_id: str) -> Task | None:
        task = self.tasks.get(task_id)
        if task is None or task.deleted:
            return None
        if self.clock.now() - task.created_at > VISIBLE_SECONDS:
            return None
        return task

    def task_object(self, task: Task) -> dict[str, Any]:
        status = self.status(task)
        width, height = SIZES[(task.resolution, task.ratio)]
        tokens = width * height * 24 * task.duration // 1024
        updated = task.created_at + {
            "queued": 0.0,
            "running": task.queued_for,
        }.get(status, task.queued_for + task.running_for)
        answer: dict[str, Any] = {
            "id": task.id,
            "model": task.body["model"],
            "status": status,
            "error": None,
            "created_at": int(task.created_at),
            "updated_at": int(updated),
            "seed": task.body.get("seed", 12345),
            "resolution": task.resolution,
            "ratio": task.ratio,
            "duration": task.duration,
            "framespersecond": 24,
            "generate_audio": task.audio,
            "service_tier": task.body.get("service_tier", "default"),
            "execution_expires_after": task.body.get("execution_expires_after", 172800),
            "draft": False,
            "priority": 0,
            "output_format": "mp4",
        }
        if status == "succeeded":
            expires = int(updated + self.url_ttl_seconds)
            answer["content"] = {"video_url": f"{self.base_url}/videos/{task.id}.mp4?e={expires}"}
            answer["usage"] = {"completion_tokens": tokens, "total_tokens": tokens}
        elif status == "failed" and task.failure is not None:
            answer["error"] = {"code": task.failure[0], "message": task.failure[1]}
        elif status == "expired":
            answer["error"] = {"code": "TaskExpired", "message": "the task expired"}
        return answer

    def video_for(self, task: Task) -> Path:
        return self.videos.for_contract(task.resolution, task.ratio, task.duration, task.audio)

    # ---- callbacks (a ticker thread watches for status changes) ------------------------

    def tick(self) -> None:
        """Send the callbacks due: only tasks that asked for one and have not ended are
        looked at, so that a fake with thousands of finished tasks ticks cheaply."""
        for task_id in list(self._awaiting_callbacks):
            task = self.tasks[task_id]
            url = task.body["callback_url"]
            status = self.status(task)
            if task.deleted or status in ("cancelled", "expired"):
                self._awaiting_callbacks.discard(task_id)
                continue
            if status in task.called_back:
                continue
            task.called_back.add(status)
            if status in ("succeeded", "failed"):
                self._awaiting_callbacks.discard(task_id)
            body = self.task_object(task)
            self._callback_pool.submit(self._call_back, url, task.id, status, body)

    def _call_back(self, url: str, task_id: str, status: str, body: dict[str, Any]) -> None:
        # Terminal statuses are retried 3 times when not acknowledged (2xx) within the timeout.
        attempts = 4 if status in ("succeeded", "failed") else 1
        for attempt in range(1, attempts + 1):
            self.callbacks.append((task_id, status, attempt))
            try:
                response = self._callback_client.post(url, json=body)
                if response.is_success:
                    return
            except httpx.HTTPError:
                pass

    # ---- HTTP ---------------------------------------------------------------------------

    def _build_app(self) -> FastAPI:
        app = FastAPI()
        prefix = "/api/v3/contents/generations/tasks"

        def error(status: int, code: str, message: str, kind: str = "BadRequest") -> Response:
            request_id = secrets.token_hex(8)
            body = {"error": {"code": code, "message": f"{message} Request id: {request_id}"}}
            body["error"]["type"] = kind
            return JSONResponse(body, status_code=status)

        def gate(request: Request) -> Response | None:
            if request.headers.get("authorization") != f"Bearer {self.api_key}":
                return error(401, "AuthenticationError", "The API key is invalid.", "Unauthorized")
            if self._throttle > 0:
                self._throttle -= 1
                return error(429, "TooManyRequests", "Too many requests.", "TooManyRequests")
            return None

        @app.post(prefix)
        async def create(request: Request) -> Response:
            refused = gate(request)
            if refused is not None:
                return refused
            if self._refusal is not None:
                self.refused_creates += 1
                status, code = self._refusal
                return error(status, code, "The request was refused.", "Refused")
            try:
                body = await request.json()
            except ValueError:
                return error(400, "InvalidParameter", "The request body is not valid JSON.")
            problem = self._validate(body)
            if problem is not None:
                return error(400, *problem)
            text = next(i["text"] for i in body["content"] if i["type"] == "text")
            if any(word in text.lower() for word in self.sensitive_words):
                return error(
                    400,
                    "InputTextSensitiveContentDetected",
                    "The request failed because the input text may contain sensitive information.",
                )
            key = request.headers.get(self.idempotency_header or "", "")
            if key and key in self._keyed:
                return JSONResponse({"id": self._keyed[key]})
            self.creates.append(body)
            # Legacy text commands override the fields, as upstream does.
            options = {m.group(1).lower(): m.group(2) for m in _COMMAND.finditer(text)}
            resolution = options.get("rs") or options.get("resolution") or body.get("resolution")
            duration = options.get("dur") or options.get("duration") or body.get("duration", 5)
            ratio = body.get("ratio", "adaptive")
            now = self.clock.now()
            task_id = time.strftime("cgt-%Y%m%d%H%M%S-", time.gmtime(now)) + secrets.token_hex(3)
            self.tasks[task_id] = Task(
                id=task_id,
                body=body,
                created_at=now,
                resolution=resolution or "720p",
                ratio="16:9" if ratio == "adaptive" else ratio,
                duration=int(duration) if int(duration) > 0 else 5,
                audio=bool(body.get("generate_audio", True)),
                queued_for=self.queued_seconds,
                running_for=self.running_seconds,
                failure=self._failures.pop(0) if self._failures else None,
                stalled=self._stall,
            )
            self._stall = False
            if body.get("callback_url"):
                self._awaiting_callbacks.add(task_id)
            if key:
                self._keyed[key] = task_id
            return JSONResponse({"id": task_id})

        @app.get(prefix + "/{task_id}")
        async def get(task_id: str, request: Request) -> Response:
            self.polls.append((task_id, self.clock.now()))
            self.task_gets += 1
            if self.poll_delay_seconds:
                await asyncio.sleep(self.poll_delay_seconds)
            refused = gate(request)
            if refused is not None:
                return refused
            task = self.visible(task_id)
            if task is None:
                return error(404, "ResourceNotFound", f"The task {task_id} was not found.")
            return JSONResponse(self.task_object(task))

        @app.get(prefix)
        async def list_tasks(request: Request) -> Response:
            refused = gate(request)
            if refused is not None:
                return refused
            self.list_requests += 1
            if self.lists_refused_with is not None:
                status = self.lists_refused_with
                return error(status, "InvalidParameter", "The request is not valid.")
            query = request.query_params
            page_num = int(query.get("page_num", 1))
            page_size = int(query.get("page_size", 10))
            if not (1 <= page_num <= 500 and 1 <= page_size <= 500):
                return error(400, "InvalidParameter", "page_num and page_size must be 1 to 500.")
            ids = query.getlist("filter.task_ids")
            now = self.clock.now()
            self.polls.extend((task_id, now) for task_id in ids)  # a read of each task
            if self.poll_delay_seconds:
                await asyncio.sleep(self.poll_delay_seconds)
            if ids:  # looked up, not scanned: a gateway lists a hundred of thousands
                chosen = [self.tasks[i] for i in dict.fromkeys(ids) if i in self.tasks]
            else:
                chosen = list(self.tasks.values())
            items = [
                self.task_object(task)
                for task in sorted(chosen, key=lambda t: -t.created_at)
                if self.visible(task.id) is not None
            ]
            for name in ("status", "model", "service_tier"):
                wanted = query.get(f"filter.{name}")
                if wanted:
                    items = [item for item in items if item[name] == wanted]
            start = (page_num - 1) * page_size
            return JSONResponse({"total": len(items), "items": items[start : start + page_size]})

        @app.delete(prefix + "/{task_id}")
        async def delete(task_id: str, request: Request) -> Response:
            refused = gate(request)
            if refused is not None:
                return refused
            task = self.visible(task_id)
            if task is None:
                return error(404, "ResourceNotFound", f"The task {task_id} was not found.")
            status = self.status(task)
            if status == "queued":
                task.cancelled_at = self.clock.now()
            elif status in ("succeeded", "failed", "expired"):
                task.deleted = True
            else:
                return error(
                    409, "InvalidAction.TaskStatus", f"A {status} task cannot be cancelled."
                )
            return Response(status_code=200)

        @app.get("/videos/{name}")
        async def video(name: str, e: int = 0) -> Response:
            task = self.tasks.get(name.removesuffix(".mp4"))
            if task is None or self.clock.now() > e:
                return Response("AccessDenied: Request has expired", status_code=403)
            return FileResponse(self.video_for(task), media_type="video/mp4")

        return app

    def _validate(self, body: Any) -> tuple[str, str] | None:
        if not isinstance(body, dict):
            return ("InvalidParameter", "The request body must be an object.")
        if "model" not in body:
            return ("MissingParameter", "The request failed because it is missing `model`.")
        if body["model"] not in MODELS:
            return ("InvalidEndpoint.NotFound", f"The model {body['model']} does not exist.")
        content = body.get("content")
        if not isinstance(content, list) or not content:
            return ("MissingParameter", "The request failed because it is missing `content`.")
        images = [item for item in content if item.get("type") == "image_url"]
        if len(images) > 2 or sum(item.get("type") == "text" for item in content) != 1:
            return ("InvalidParameter", "The parameter `content` specified is not valid.")
        if len(images) == 2 and not all("role" in item for item in images):
            return (
                "InvalidParameter",
                "The parameter `content` specified in the request is not valid: role must be "
                "specified for image contents",
            )
        for item in images:
            if item.get("role", "first_frame") not in ("first_frame", "last_frame"):
                return ("InvalidParameter", "The parameter `content.role` is not valid.")
            if not str(item.get("image_url", {}).get("url", "")).startswith(
                ("http://", "https://", "data:image/", "asset://")
            ):
                return ("InvalidParameter", "The parameter `content.image_url.url` is not valid.")
        checks = (
            ("resolution", lambda v: v in RESOLUTIONS),
            ("ratio", lambda v: v in RATIOS),
            ("duration", lambda v: type(v) is int and (4 <= v <= 12 or v == -1)),
            ("seed", lambda v: type(v) is int and -1 <= v <= 2**32 - 1),
            ("camera_fixed", lambda v: type(v) is bool),
            ("watermark", lambda v: type(v) is bool),
            ("generate_audio", lambda v: type(v) is bool),
            ("execution_expires_after", lambda v: type(v) is int and 3600 <= v <= 259200),
        )
        for name, ok in checks:
            if name in body and not ok(body[name]):
                return ("InvalidParameter", f"The parameter `{name}` specified is not valid.")
        return None
