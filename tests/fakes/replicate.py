"""A fake Replicate predictions API for ByteDance's Seedance 1.5 Pro, built from Replicate's
public docs (docs/providers.md, "Replicate"), served on 127.0.0.1 for tests.

    POST /v1/models/{owner}/{name}/predictions   create (201) -> the prediction
    GET  /v1/predictions/{id}                    the prediction
    POST /v1/predictions/{id}/cancel             cancel -> the prediction
    GET  /v1/webhooks/default/secret             {"key": "whsec_..."}
    GET  /files/{id}.mp4                         the output (replicate.delivery; no token)

Every /v1 call needs `Authorization: Bearer <token>` (the official client sends it so).
The model's inputs are checked as its schema says (`duration` an integer 2..12,
`aspect_ratio` one of seven, `image`/`last_frame_image` URIs, ...; 422 otherwise). As on
Replicate, `aspect_ratio` is ignored when an `image` is given: the video takes the image's
ratio (the nearest of the seven), so the fake reads the image (a data URI, or a URL on
loopback) to find it. A prediction is `starting` for `starting_seconds`, `processing` for
`processing_seconds`, then `succeeded` with `output` the video's URL; `advance` moves the
clock. `faults.add(Fault.X)` fails the next creates (refused) or predictions (accepted,
then `failed` with Replicate's error text); `sensitive_words` fail like E005.

Webhooks follow the Standard Webhooks scheme Replicate uses: `webhook-id`,
`webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`
with the default secret; `completed` is retried while not answered 2xx. `Prefer: wait` is
honoured (up to 60 s) though runbase never sends it.
"""

from __future__ import annotations

import asyncio
import base64
import datetime
import io
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response
from PIL import Image

from fakes.common import (
    CREATE_FAULTS,
    DroppedConnection,
    FakeClock,
    Fault,
    FaultPlan,
    VideoLibrary,
    deliver,
)
from runbase.core.webhooks import sign

MODEL = "bytedance/seedance-1.5-pro"
VERSION = "78c1986fecf4df185593bbf148a0ed5b4b18b7e0e0f34cc3e32c68cdfa9536ba"
RATIOS = ("16:9", "4:3", "1:1", "3:4", "9:16", "21:9", "9:21")
RESOLUTIONS = ("480p", "720p", "1080p")
_ERRORS: dict[Fault, str] = {
    Fault.FAILED: "Prediction interrupted; please retry (code: PA)",
    Fault.EXPIRED: "Prediction timed out",
    Fault.CONTENT_POLICY: (
        "The input or output was flagged as sensitive. Please try again with different "
        "inputs. (E005)"
    ),
}
_TERMINAL = ("succeeded", "failed", "canceled")


@dataclass
class Prediction:
    id: str
    model: str
    input: dict[str, Any]
    created_at: float
    starting_for: float
    processing_for: float
    ratio: str
    webhook: str | None
    events: tuple[str, ...]
    fault: Fault | None = None
    canceled_at: float | None = None
    sent: set[str] = field(default_factory=set)


def _iso(moment: float | None) -> str | None:
    if moment is None:
        return None
    return datetime.datetime.fromtimestamp(moment, datetime.UTC).isoformat().replace("+00:00", "Z")


class FakeReplicate:
    def __init__(
        self,
        api_token: str,
        videos_dir: Path,
        *,
        model: str = MODEL,
        starting_seconds: float = 0.2,
        processing_seconds: float = 0.3,
        webhook_attempts: int = 3,
    ) -> None:
        self.api_token = api_token
        self.model = model
        self.starting_seconds = starting_seconds
        self.processing_seconds = processing_seconds
        self.webhook_attempts = webhook_attempts
        self.clock = FakeClock()
        self.videos = VideoLibrary(videos_dir)
        self.faults = FaultPlan()
        self.sensitive_words: set[str] = set()
        self.predictions: dict[str, Prediction] = {}
        self.creates: list[dict[str, Any]] = []
        """The body of every accepted create."""
        self.cancels: list[str] = []
        self.webhooks: list[tuple[str, str, int, int]] = []
        """(prediction id, event, attempt, HTTP status or 0) of every webhook POST."""
        self.secret = "whsec_" + base64.b64encode(secrets.token_bytes(24)).decode()
        self.base_url = ""
        self._lock = threading.Lock()
        self.app = self._build_app()

    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    # ---- state ------------------------------------------------------------------------

    def status_of(self, prediction: Prediction) -> str:
        if prediction.canceled_at is not None:
            return "canceled"
        elapsed = self.clock.now() - prediction.created_at
        if elapsed < prediction.starting_for:
            return "starting"
        done = prediction.starting_for + prediction.processing_for
        if prediction.fault is Fault.STALL or elapsed < done:
            return "processing"
        return "failed" if prediction.fault in _ERRORS else "succeeded"

    def video_for(self, prediction: Prediction) -> Path:
        data = prediction.input
        return self.videos.for_contract(
            data.get("resolution", "720p"),
            prediction.ratio,
            int(data.get("duration", 5)),
            bool(data.get("generate_audio", False)),
            broken=prediction.fault is Fault.BAD_VIDEO,
        )

    def body_of(self, prediction: Prediction) -> dict[str, Any]:
        status = self.status_of(prediction)
        start = prediction.created_at + prediction.starting_for
        end = start + prediction.processing_for
        if prediction.canceled_at is not None:
            end = prediction.canceled_at
        api = f"{self.base_url}/v1/predictions/{prediction.id}"
        return {
            "id": prediction.id,
            "model": prediction.model,
            "version": VERSION,
            "input": prediction.input,
            "output": f"{self.base_url}/files/{prediction.id}.mp4"
            if status == "succeeded"
            else None,
            "logs": "" if status == "starting" else "Generating video...\n",
            "error": _ERRORS.get(prediction.fault) if status == "failed" else None,  # type: ignore[arg-type]
            "status": status,
            "source": "api",
            "data_removed": False,
            "created_at": _iso(prediction.created_at),
            "started_at": _iso(start) if status != "starting" else None,
            "completed_at": _iso(end) if status in _TERMINAL else None,
            "urls": {
                "get": api,
                "cancel": api + "/cancel",
                "web": f"https://replicate.com/p/{prediction.id}",
            },
            "metrics": {"predict_time": prediction.processing_for} if status in _TERMINAL else {},
        }

    # ---- webhooks ---------------------------------------------------------------------

    def sign(self, webhook_id: str, timestamp: int, body: bytes) -> str:
        return sign(self.secret, webhook_id, timestamp, body)  # the Standard Webhooks scheme

    def tick(self) -> None:
        for prediction in list(self.predictions.values()):
            if not prediction.webhook:
                continue
            status = self.status_of(prediction)
            # A tick that comes late (a busy machine) still sends "start" before "completed".
            due = [] if status == "starting" else ["start"]
            due += ["completed"] if status in _TERMINAL else []
            events = [event for event in due if event not in prediction.sent]
            prediction.sent.update(events)
            events = [event for event in events if event in prediction.events]
            if events:
                body = json.dumps(self.body_of(prediction)).encode()
                threading.Thread(
                    target=self._post_webhooks, args=(prediction, events, body)
                ).start()

    def _post_webhooks(self, prediction: Prediction, events: list[str], body: bytes) -> None:
        for event in events:  # in order, one after the other
            self._post_webhook(prediction, event, body)

    def _post_webhook(self, prediction: Prediction, event: str, body: bytes) -> None:
        assert prediction.webhook is not None
        webhook_id = "msg_" + secrets.token_hex(12)  # the same on every retry

        def headers() -> dict[str, str]:
            stamp = int(time.time())
            return {
                "content-type": "application/json",
                "webhook-id": webhook_id,
                "webhook-timestamp": str(stamp),
                "webhook-signature": self.sign(webhook_id, stamp, body),
            }

        deliver(
            prediction.webhook,
            body,
            headers,
            self.webhook_attempts if event == "completed" else 1,
            lambda attempt, status: self.webhooks.append((prediction.id, event, attempt, status)),
        )

    # ---- HTTP -------------------------------------------------------------------------

    def _build_app(self) -> FastAPI:
        app = FastAPI()

        def refused(request: Request) -> Response | None:
            if request.headers.get("authorization") not in (
                f"Bearer {self.api_token}",
                f"Token {self.api_token}",
            ):
                return _problem(
                    401, "Unauthenticated", "You did not pass a valid authentication token"
                )
            return None

        @app.post("/v1/models/{owner}/{name}/predictions")
        async def create(owner: str, name: str, request: Request) -> Response:
            if (answer := refused(request)) is not None:
                return answer
            if f"{owner}/{name}" != self.model:
                return _problem(404, "Not found", "The requested resource could not be found.")
            try:
                body = await request.json()
            except ValueError:
                return _problem(400, "Bad request", "The request body is not valid JSON.")
            data = body.get("input") if isinstance(body, dict) else None
            problem = _validate(data)
            if problem is not None:
                return _problem(422, "Input validation failed", problem)
            assert isinstance(data, dict)
            fault = self.faults.take()
            if fault in CREATE_FAULTS:
                return _refuse_create(fault)
            ratio = data.get("aspect_ratio", "16:9")
            if data.get("image"):
                try:
                    ratio = await asyncio.to_thread(_nearest_ratio, str(data["image"]))
                except (OSError, ValueError, httpx.HTTPError):
                    return _problem(422, "Input validation failed", "- input.image: cannot read")
            if any(word in str(data["prompt"]).lower() for word in self.sensitive_words):
                fault = Fault.CONTENT_POLICY
            events = body.get("webhook_events_filter") or ["start", "output", "logs", "completed"]
            prediction = Prediction(
                id=secrets.token_hex(13)[:26],
                model=self.model,
                input=data,
                created_at=self.clock.now(),
                starting_for=self.starting_seconds,
                processing_for=self.processing_seconds,
                ratio=ratio,
                webhook=body.get("webhook"),
                events=tuple(events),
                fault=fault,
            )
            with self._lock:
                self.predictions[prediction.id] = prediction
                self.creates.append(body)
            wait = _prefer_wait(request.headers.get("prefer", ""))
            end = time.monotonic() + wait
            while time.monotonic() < end and self.status_of(prediction) not in _TERMINAL:
                await asyncio.sleep(0.05)
            api = f"{self.base_url}/v1/predictions/{prediction.id}"
            return JSONResponse(
                self.body_of(prediction), status_code=201, headers={"location": api}
            )

        @app.get("/v1/predictions/{prediction_id}")
        async def get(prediction_id: str, request: Request) -> Response:
            if (answer := refused(request)) is not None:
                return answer
            prediction = self.predictions.get(prediction_id)
            if prediction is None:
                return _problem(404, "Not found", "The requested resource could not be found.")
            return JSONResponse(self.body_of(prediction))

        @app.post("/v1/predictions/{prediction_id}/cancel")
        async def cancel(prediction_id: str, request: Request) -> Response:
            if (answer := refused(request)) is not None:
                return answer
            prediction = self.predictions.get(prediction_id)
            if prediction is None:
                return _problem(404, "Not found", "The requested resource could not be found.")
            self.cancels.append(prediction_id)
            if self.status_of(prediction) not in _TERMINAL:
                prediction.canceled_at = self.clock.now()
            return JSONResponse(self.body_of(prediction))

        @app.get("/v1/webhooks/default/secret")
        async def secret(request: Request) -> Response:
            if (answer := refused(request)) is not None:
                return answer
            return JSONResponse({"key": self.secret})

        @app.get("/files/{name}")
        async def files(name: str) -> Response:
            prediction = self.predictions.get(name.removesuffix(".mp4"))
            if prediction is None or self.status_of(prediction) != "succeeded":
                return Response("Not found", status_code=404)
            return FileResponse(self.video_for(prediction), media_type="video/mp4")

        return app


def _problem(status: int, title: str, detail: str, **headers: str) -> Response:
    return JSONResponse(
        {"title": title, "detail": detail, "status": status}, status_code=status, headers=headers
    )


def _validate(data: Any) -> str | None:
    """The model's input schema, as a 422's `detail`."""
    if not isinstance(data, dict):
        return "- input: Invalid type. Expected: object"
    if not isinstance(data.get("prompt"), str) or not data["prompt"]:
        return "- input: prompt is required"
    checks: dict[str, Any] = {
        "duration": lambda v: type(v) is int and 2 <= v <= 12,
        "aspect_ratio": lambda v: v in RATIOS,
        "resolution": lambda v: v in RESOLUTIONS,
        "fps": lambda v: v == 24,
        "camera_fixed": lambda v: type(v) is bool,
        "generate_audio": lambda v: type(v) is bool,
        "seed": lambda v: type(v) is int,
        "image": lambda v: isinstance(v, str) and v.startswith(("http", "data:")),
        "last_frame_image": lambda v: isinstance(v, str) and v.startswith(("http", "data:")),
    }
    for name, ok in checks.items():
        if name in data and not ok(data[name]):
            return f"- input.{name}: Does not match the schema"
    return None


def _nearest_ratio(image: str) -> str:
    """The ratio of the seven nearest the image's (what the model does with an image)."""
    if image.startswith("data:"):
        raw = base64.b64decode(image.partition(",")[2])
    else:
        raw = httpx.get(image, timeout=10).raise_for_status().content
    with Image.open(io.BytesIO(raw)) as picture:
        aspect = picture.width / picture.height

    def distance(ratio: str) -> float:
        w, h = (int(part) for part in ratio.split(":"))
        return abs(w / h - aspect)

    return min((r for r in RATIOS if r != "9:21"), key=distance)


def _prefer_wait(header: str) -> float:
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "wait":
            return min(float(value or 60), 60.0)
    return 0.0


def _refuse_create(fault: Fault | None) -> Response:
    if fault is Fault.CONNECTION:
        return DroppedConnection()
    if fault is Fault.SERVER_ERROR:
        return _problem(500, "Internal server error", "Something went wrong.")
    if fault is Fault.RATE_LIMITED:
        detail = "Request was throttled. Expected available in 1 second."
        return _problem(429, "Too many requests", detail, **{"retry-after": "1"})
    if fault is Fault.AUTH:
        return _problem(401, "Unauthenticated", "You did not pass a valid authentication token")
    return _problem(
        402,
        "Insufficient credit",
        "You have insufficient credit to run this model. Go to "
        "https://replicate.com/account/billing#billing to purchase credit.",
    )
