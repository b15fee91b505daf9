"""A fake fal queue API for ByteDance's Seedance 1.5 Pro, built from fal's public docs
(docs/providers.md, "fal"), served on 127.0.0.1 for tests.

    POST /fal-ai/bytedance/seedance/v1.5/pro/{text,image}-to-video[?fal_webhook=URL]
                                              submit -> request_id, status/response/cancel URLs
    GET  /fal-ai/bytedance/requests/{id}/status   IN_QUEUE (+queue_position), IN_PROGRESS,
                                                  COMPLETED (+error, error_type on a failure)
    GET  /fal-ai/bytedance/requests/{id}          the result ({"video": {"url": ...}, "seed"})
                                                  or the failure's HTTP error (422, 500, 504)
    PUT  /fal-ai/bytedance/requests/{id}/cancel   202 CANCELLATION_REQUESTED / 400 ALREADY_COMPLETED
    GET  /.well-known/jwks.json                   the Ed25519 keys webhooks are signed with
    GET  /files/{id}.mp4                          the video (fal's CDN; no key needed)

As fal does, status and result URLs name only the app (`fal-ai/bytedance`), not the
endpoint's sub-path. Every queue call needs `Authorization: Key <key>`. Inputs are checked
like fal's schema (duration is a string "4".."12"; 422 with a `detail` list otherwise).

A request is IN_QUEUE for `queue_seconds`, IN_PROGRESS for `run_seconds`, then COMPLETED;
`advance` moves the clock instead of sleeping. `faults.add(Fault.X)` fails the next
creates (refused) or tasks (accepted, then failed); `sensitive_words` are refused by the
"content checker". A cancel removes a queued request (it never runs, nothing is billed);
in progress, fal only forwards the cancel to the app, which for Seedance keeps running.

Webhooks (`fal_webhook`) are POSTed on completion, signed with Ed25519 over
`request_id \\n user_id \\n timestamp \\n sha256_hex(body)` and retried while not answered 2xx.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response

from fakes.common import (
    CREATE_FAULTS,
    DroppedConnection,
    FakeClock,
    Fault,
    FaultPlan,
    VideoLibrary,
    deliver,
)

APP = "fal-ai/bytedance"
TEXT_TO_VIDEO = "fal-ai/bytedance/seedance/v1.5/pro/text-to-video"
IMAGE_TO_VIDEO = "fal-ai/bytedance/seedance/v1.5/pro/image-to-video"
RATIOS = ("21:9", "16:9", "4:3", "1:1", "3:4", "9:16", "auto")
RESOLUTIONS = ("480p", "720p", "1080p")
DURATIONS = tuple(str(n) for n in range(4, 13))
_FAILURES: dict[Fault, tuple[int, str, str]] = {
    # fault: (HTTP status of the result, error_type, message)
    Fault.FAILED: (500, "runner_server_error", "Internal server error"),
    Fault.EXPIRED: (504, "request_timeout", "Request timed out"),
    Fault.CONTENT_POLICY: (
        422,
        "content_policy_violation",
        "The content could not be processed because it contained material flagged by a "
        "content checker.",
    ),
}


@dataclass
class QueuedRequest:
    id: str
    endpoint: str
    input: dict[str, Any]
    created_at: float
    queued_for: float
    running_for: float
    webhook: str | None
    fault: Fault | None = None
    cancelled: bool = False
    webhook_sent: bool = False
    seed: int = 0
    logs: list[dict[str, Any]] = field(default_factory=list)


class FakeFal:
    def __init__(
        self,
        api_key: str,
        videos_dir: Path,
        *,
        queue_seconds: float = 0.2,
        run_seconds: float = 0.3,
        user_id: str = "fake-user-1",
        webhook_attempts: int = 3,
    ) -> None:
        self.api_key = api_key
        self.queue_seconds = queue_seconds
        self.run_seconds = run_seconds
        self.user_id = user_id
        self.webhook_attempts = webhook_attempts
        self.clock = FakeClock()
        self.videos = VideoLibrary(videos_dir)
        self.faults = FaultPlan()
        self.sensitive_words: set[str] = set()
        self.requests: dict[str, QueuedRequest] = {}
        self.creates: list[dict[str, Any]] = []
        """Every accepted submit: {"endpoint", "input", "webhook", "request_id"}."""
        self.cancels: list[str] = []
        self.webhooks: list[tuple[str, int, int]] = []
        """(request id, attempt, HTTP status or 0) of every webhook POST."""
        self.signing_key = Ed25519PrivateKey.generate()
        self.key_id = "fake-fal-key-1"
        self.base_url = ""
        self._lock = threading.Lock()
        self.app = self._build_app()

    # ---- state ------------------------------------------------------------------------

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    def status_of(self, request: QueuedRequest) -> str:
        elapsed = self.clock.now() - request.created_at
        if request.cancelled:
            return "COMPLETED"
        if elapsed < request.queued_for:
            return "IN_QUEUE"
        if request.fault is Fault.STALL or elapsed < request.queued_for + request.running_for:
            return "IN_PROGRESS"
        return "COMPLETED"

    def failure_of(self, request: QueuedRequest) -> tuple[int, str, str] | None:
        if request.cancelled:
            return (400, "request_cancelled", "Request was cancelled")
        return _FAILURES.get(request.fault) if request.fault else None

    def status_body(self, request: QueuedRequest) -> dict[str, Any]:
        status = self.status_of(request)
        urls = self._urls(request.id)
        body: dict[str, Any] = {"status": status, "request_id": request.id, **urls}
        if status == "IN_QUEUE":
            body["queue_position"] = sum(
                1
                for other in self.requests.values()
                if other.created_at < request.created_at and self.status_of(other) == "IN_QUEUE"
            )
        else:
            body["logs"] = request.logs
        if status == "COMPLETED":
            body["metrics"] = {"inference_time": request.running_for}
            failure = self.failure_of(request)
            if failure is not None:
                body["error"], body["error_type"] = failure[2], failure[1]
        return body

    def result_body(self, request: QueuedRequest) -> dict[str, Any]:
        path = self.video_for(request)
        return {
            "video": {
                "url": f"{self.base_url}/files/{request.id}.mp4",
                "content_type": "video/mp4",
                "file_name": "output.mp4",
                "file_size": path.stat().st_size,
            },
            "seed": request.seed,
        }

    def video_for(self, request: QueuedRequest) -> Path:
        ratio = request.input.get("aspect_ratio", "16:9")
        return self.videos.for_contract(
            request.input.get("resolution", "720p"),
            "16:9" if ratio == "auto" else ratio,
            int(request.input.get("duration", "5")),
            bool(request.input.get("generate_audio", True)),
            broken=request.fault is Fault.BAD_VIDEO,
        )

    def _urls(self, request_id: str) -> dict[str, str]:
        base = f"{self.base_url}/{APP}/requests/{request_id}"
        return {
            "response_url": base,
            "status_url": base + "/status",
            "cancel_url": base + "/cancel",
        }

    # ---- webhooks ---------------------------------------------------------------------

    def jwks(self) -> dict[str, Any]:
        raw = self.signing_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        x = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        return {"keys": [{"kty": "OKP", "crv": "Ed25519", "x": x, "kid": self.key_id}]}

    def sign(self, request_id: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
        """The headers fal sends with a webhook for `body`."""
        stamp = str(int(time.time()) if timestamp is None else timestamp)
        digest = hashlib.sha256(body).hexdigest()
        message = "\n".join((request_id, self.user_id, stamp, digest)).encode()
        return {
            "content-type": "application/json",
            "x-fal-webhook-request-id": request_id,
            "x-fal-webhook-user-id": self.user_id,
            "x-fal-webhook-timestamp": stamp,
            "x-fal-webhook-signature": self.signing_key.sign(message).hex(),
        }

    def webhook_body(self, request: QueuedRequest) -> bytes:
        failure = self.failure_of(request)
        body: dict[str, Any] = {"request_id": request.id, "gateway_request_id": request.id}
        if failure is None:
            body |= {"status": "OK", "payload": self.result_body(request)}
        else:
            detail = [{"msg": failure[2], "type": failure[1]}]
            body |= {"status": "ERROR", "error": failure[2], "payload": {"detail": detail}}
        return json.dumps(body).encode()

    def tick(self) -> None:
        for request in list(self.requests.values()):
            completed = self.status_of(request) == "COMPLETED"
            if request.webhook and not request.webhook_sent and completed:
                request.webhook_sent = True
                threading.Thread(target=self._post_webhook, args=(request,)).start()

    def _post_webhook(self, request: QueuedRequest) -> None:
        assert request.webhook is not None
        body = self.webhook_body(request)
        deliver(
            request.webhook,
            body,
            lambda: self.sign(request.id, body),
            self.webhook_attempts,
            lambda attempt, status: self.webhooks.append((request.id, attempt, status)),
        )

    # ---- HTTP -------------------------------------------------------------------------

    def _build_app(self) -> FastAPI:
        app = FastAPI()

        def refused(request: Request) -> Response | None:
            if request.headers.get("authorization") != f"Key {self.api_key}":
                return JSONResponse({"detail": "Invalid API key"}, status_code=401)
            return None

        async def submit(request: Request, endpoint: str) -> Response:
            if (answer := refused(request)) is not None:
                return answer
            try:
                arguments = await request.json()
            except ValueError:
                return _invalid([], "The request body is not valid JSON.")
            problem = _validate(endpoint, arguments)
            if problem is not None:
                return problem
            fault = self.faults.take()
            if fault in CREATE_FAULTS:
                return await _refuse_create(fault, request)
            prompt = str(arguments["prompt"]).lower()
            if any(word in prompt for word in self.sensitive_words):
                fault = Fault.CONTENT_POLICY
            request_id = str(uuid.uuid4())
            webhook = request.query_params.get("fal_webhook")
            seed = arguments.get("seed", -1)
            with self._lock:
                self.requests[request_id] = QueuedRequest(
                    id=request_id,
                    endpoint=endpoint,
                    input=arguments,
                    created_at=self.clock.now(),
                    queued_for=self.queue_seconds,
                    running_for=self.run_seconds,
                    webhook=webhook,
                    fault=fault,
                    seed=seed if isinstance(seed, int) and seed >= 0 else secrets.randbelow(2**31),
                )
                self.creates.append(
                    {
                        "endpoint": endpoint,
                        "input": arguments,
                        "webhook": webhook,
                        "request_id": request_id,
                    }
                )
            body = {"request_id": request_id, **self._urls(request_id), "queue_position": 0}
            if webhook:
                body["gateway_request_id"] = request_id
            return JSONResponse(body)

        @app.post("/" + TEXT_TO_VIDEO)
        async def text_to_video(request: Request) -> Response:
            return await submit(request, TEXT_TO_VIDEO)

        @app.post("/" + IMAGE_TO_VIDEO)
        async def image_to_video(request: Request) -> Response:
            return await submit(request, IMAGE_TO_VIDEO)

        def find(request_id: str) -> QueuedRequest | None:
            return self.requests.get(request_id)

        @app.get("/" + APP + "/requests/{request_id}/status")
        async def status(request_id: str, request: Request) -> Response:
            if (answer := refused(request)) is not None:
                return answer
            queued = find(request_id)
            if queued is None:
                return JSONResponse({"detail": "Request not found"}, status_code=404)
            return JSONResponse(self.status_body(queued))

        @app.get("/" + APP + "/requests/{request_id}")
        async def result(request_id: str, request: Request) -> Response:
            if (answer := refused(request)) is not None:
                return answer
            queued = find(request_id)
            if queued is None:
                return JSONResponse({"detail": "Request not found"}, status_code=404)
            if self.status_of(queued) != "COMPLETED":
                return JSONResponse({"detail": "Request is still in progress"}, status_code=400)
            failure = self.failure_of(queued)
            if failure is not None:
                code, kind, message = failure
                detail = [{"loc": ["body", "prompt"], "msg": message, "type": kind}]
                return JSONResponse(
                    {"detail": detail if code == 422 else message},
                    status_code=code,
                    headers={"x-fal-error-type": kind},
                )
            return JSONResponse(self.result_body(queued))

        @app.put("/" + APP + "/requests/{request_id}/cancel")
        async def cancel(request_id: str, request: Request) -> Response:
            if (answer := refused(request)) is not None:
                return answer
            queued = find(request_id)
            if queued is None:
                return JSONResponse({"status": "NOT_FOUND"}, status_code=404)
            self.cancels.append(request_id)
            state = self.status_of(queued)
            if state == "COMPLETED":
                return JSONResponse({"status": "ALREADY_COMPLETED"}, status_code=400)
            if state == "IN_QUEUE":
                queued.cancelled = True
            return JSONResponse({"status": "CANCELLATION_REQUESTED"}, status_code=202)

        @app.get("/.well-known/jwks.json")
        async def jwks() -> Response:
            return JSONResponse(self.jwks())

        @app.get("/files/{name}")
        async def files(name: str) -> Response:
            queued = find(name.removesuffix(".mp4"))
            if queued is None or self.failure_of(queued) or self.status_of(queued) != "COMPLETED":
                return JSONResponse({"detail": "Not found"}, status_code=404)
            return FileResponse(self.video_for(queued), media_type="video/mp4")

        return app


def _invalid(loc: list[str], message: str) -> Response:
    detail = [{"loc": ["body", *loc], "msg": message, "type": "value_error"}]
    return JSONResponse({"detail": detail}, status_code=422)


def _validate(endpoint: str, arguments: Any) -> Response | None:
    """fal's input schema for the two endpoints (what the code relies on)."""
    if not isinstance(arguments, dict):
        return _invalid([], "Input should be a valid dictionary")
    if not isinstance(arguments.get("prompt"), str) or not arguments["prompt"]:
        return _invalid(["prompt"], "Field required")
    choices = {"aspect_ratio": RATIOS, "resolution": RESOLUTIONS, "duration": DURATIONS}
    for name, allowed in choices.items():
        if name in arguments and arguments[name] not in allowed:
            quoted = ", ".join(f"'{value}'" for value in allowed)
            return _invalid([name], f"Input should be {quoted}")
    for name in ("camera_fixed", "generate_audio", "enable_safety_checker"):
        if name in arguments and type(arguments[name]) is not bool:
            return _invalid([name], "Input should be a valid boolean")
    if "seed" in arguments and type(arguments["seed"]) is not int:
        return _invalid(["seed"], "Input should be a valid integer")
    if endpoint == IMAGE_TO_VIDEO:
        for name in ("image_url", "end_image_url"):
            value = arguments.get(name)
            if value is None and name == "end_image_url":
                continue
            if not isinstance(value, str) or not value.startswith(("http", "data:image/")):
                return _invalid([name], "Input should be a valid URL")
    return None


async def _refuse_create(fault: Fault | None, request: Request) -> Response:
    if fault is Fault.CONNECTION:
        # A raw ASGI answer left unfinished: the client's connection drops.
        return DroppedConnection()
    if fault is Fault.SERVER_ERROR:
        return JSONResponse({"detail": "Internal Server Error"}, status_code=500)
    if fault is Fault.RATE_LIMITED:
        return JSONResponse(
            {"detail": "Too many requests"}, status_code=429, headers={"retry-after": "1"}
        )
    if fault is Fault.AUTH:
        return JSONResponse({"detail": "Invalid API key"}, status_code=401)
    return JSONResponse(
        {
            "detail": "User is locked. Reason: Exhausted balance. Top up your balance at "
            "fal.ai/dashboard/billing."
        },
        status_code=403,
    )
