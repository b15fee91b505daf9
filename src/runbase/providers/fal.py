"""`FalProvider`: ByteDance's Seedance 1.5 Pro on fal's queue API (docs/providers.md, "fal").

    submit   POST {queue}/fal-ai/bytedance/seedance/v1.5/pro/text-to-video (no image) or
             .../image-to-video (`image_url`, and `end_image_url` for a last frame), with
             `?fal_webhook=` when runbase has a public URL                  -> request id
    poll     GET {queue}/fal-ai/bytedance/requests/{id}/status: IN_QUEUE, IN_PROGRESS ->
             Running; COMPLETED -> Finished, or (with `error`) TaskFailed / ContentRefused
    result   GET {queue}/fal-ai/bytedance/requests/{id}: `video.url`
    cancel   PUT .../requests/{id}/cancel: a queued request is removed (never billed); a
             request in progress goes on at ByteDance and is billed

fal takes no idempotency key: a submit that may have reached fal without an answer is not
repeated (`SubmitUncertain`). Its webhooks are signed with Ed25519 by a key from fal's
JWKS; `read_callback` checks the signature and the timestamp, and the task is then read
back through the API anyway. The key (`Authorization: Key ...`) goes into API calls only.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlencode

import httpx
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from runbase.providers.base import (
    AttemptState,
    CallbackRequest,
    ContentRefused,
    Finished,
    InputUnsupported,
    NotAccepted,
    Output,
    PacedProvider,
    Pacing,
    ProviderJob,
    RunLog,
    Running,
    SubmitUncertain,
    TaskFailed,
    TokenPrices,
    video_tokens,
)
from runbase.providers.http_pool import ClientPool
from runbase.providers.transport import CallFailed, RetryPolicy, call, json_object, submit_request

if TYPE_CHECKING:
    from pydantic import SecretStr

    from runbase.config import Settings

__all__ = ["FalProvider"]

logger = logging.getLogger(__name__)

APP: Final = "fal-ai/bytedance"
"""Status, result and cancel URLs name the app, not the endpoint's sub-path."""
TEXT_TO_VIDEO: Final = "fal-ai/bytedance/seedance/v1.5/pro/text-to-video"
IMAGE_TO_VIDEO: Final = "fal-ai/bytedance/seedance/v1.5/pro/image-to-video"
MAX_SEED: Final = 2**31 - 1
"""fal's seed is a signed 32-bit integer (-1 for random); the contract allows up to 2^32-1."""
WEBHOOK_TOLERANCE_S: Final = 300
JWKS_TTL_S: Final = 3600.0
JWKS_REFRESH_S: Final = 60.0
_POLL_BUDGET_S: Final = 20.0
_PROGRESS: Final = {"IN_QUEUE": 0.1, "IN_PROGRESS": 0.5}
_CONTENT_ERRORS: Final = frozenset({"content_policy_violation"})


class FalProvider(PacedProvider):
    """Seedance 1.5 Pro on fal. Build it with `from_settings`; it needs a key."""

    name = "fal"
    display_name = "fal"
    accepts_idempotency_key = False
    supports_callbacks = True

    def __init__(
        self,
        *,
        api_key: SecretStr | None,
        queue_url: str,
        jwks_url: str,
        prices: TokenPrices,
        pacing: Pacing,
    ) -> None:
        super().__init__(pacing)
        self._api_key = api_key
        self.queue_url = queue_url.rstrip("/")
        self.jwks_url = jwks_url
        self.prices = prices
        self._client: ClientPool | None = None
        self._keys: list[Ed25519PublicKey] = []
        self._keys_read_at = float("-inf")

    @classmethod
    def from_settings(cls, settings: Settings) -> FalProvider:
        return cls(
            api_key=settings.fal_key,
            queue_url=settings.fal_queue_url,
            jwks_url=settings.fal_jwks_url,
            prices=TokenPrices(
                silent=settings.fal_price_silent_per_million_tokens,
                audio=settings.fal_price_audio_per_million_tokens,
            ),
            pacing=Pacing.from_settings(settings, "fal"),
        )

    def configuration_problem(self) -> str | None:
        if self._api_key is None or not self._api_key.get_secret_value():
            return "the fal provider needs RUNBASE_FAL_KEY"
        return None

    def check_input(self, model: str, validated_input: Mapping[str, Any]) -> None:
        """fal's Seedance 1.5 Pro takes every ratio, resolution and duration of the
        contract, first and last frames, audio on or off; its seed stops at 2^31 - 1."""
        seed = validated_input.get("seed")
        if isinstance(seed, int) and seed > MAX_SEED:
            raise InputUnsupported(f"fal takes seeds up to {MAX_SEED}; {seed} is larger")
        if len(validated_input.get("image_urls") or []) > 2:
            raise InputUnsupported("fal takes at most two images (first and last frame)")

    async def start(self) -> None:
        problem = self.configuration_problem()
        if problem is not None:
            raise NotAccepted(problem)
        assert self._api_key is not None
        self._client = ClientPool(
            base_url=self.queue_url,
            headers={"Authorization": f"Key {self._api_key.get_secret_value()}"},
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # ---- the task ------------------------------------------------------------------------

    def arguments(self, job: ProviderJob) -> tuple[str, dict[str, Any]]:
        """The endpoint and its input: the contract's fields, each in fal's own spelling
        (duration is a string of seconds on fal)."""
        arguments: dict[str, Any] = {
            "prompt": job.prompt,
            "aspect_ratio": job.aspect_ratio,
            "resolution": job.resolution,
            "duration": str(job.duration_seconds),
            "generate_audio": job.audio,
            "seed": job.seed,
            "camera_fixed": bool(job.input.get("camera_fixed", False)),
        }
        if not job.image_urls:
            return TEXT_TO_VIDEO, arguments
        arguments["image_url"] = job.image_urls[0]
        if len(job.image_urls) > 1:
            arguments["end_image_url"] = job.image_urls[1]
        return IMAGE_TO_VIDEO, arguments

    async def submit(self, job: ProviderJob, log: RunLog) -> str:
        self.check_input(job.model, {**job.input, "seed": job.seed})
        endpoint, arguments = self.arguments(job)
        path = "/" + endpoint
        if job.callback_url is not None:
            path += "?" + urlencode({"fal_webhook": job.callback_url})
        log.progress(0.05, "submitting")
        policy = RetryPolicy(self.submit_retry_s, self.poll_interval_s, retry_unsent_only=True)
        response = await submit_request(
            self._api, path, policy=policy, log=log, provider=self.display_name, json=arguments
        )
        if response.status_code >= 300:
            raise _refusal(response)
        request_id = (json_object(response) or {}).get("request_id")
        if not isinstance(request_id, str) or not request_id:
            raise SubmitUncertain("fal answered the submit without a request id")
        logger.info("run %s submitted to fal as request %s", job.run_id, request_id)
        return request_id

    async def poll(self, task_id: str, log: RunLog) -> Running | Finished:
        response = await self._read(f"/{APP}/requests/{task_id}/status", log)
        if response is None:
            return Running(0.1, "fal busy")
        if response.status_code == 404:
            raise TaskFailed(f"fal lost request {task_id} (it is no longer found)")
        body = json_object(response)
        if response.status_code >= 300 or body is None:
            log.log(f"fal answered HTTP {response.status_code} to a poll; polling on")
            return Running(0.1, "unknown")
        status = body.get("status")
        if status == "COMPLETED":
            if body.get("error"):
                raise _task_failure(task_id, body.get("error_type"), body.get("error"))
            return Finished()
        if status == "IN_QUEUE":
            position = body.get("queue_position")
            stage = (
                f"queued at fal (position {position})" if isinstance(position, int) else "queued"
            )
            return Running(_PROGRESS["IN_QUEUE"], stage)
        return Running(_PROGRESS.get(str(status), 0.1), "running at fal")

    async def result(self, task_id: str, log: RunLog) -> Output:
        response = await self._read(f"/{APP}/requests/{task_id}", log)
        if response is None:
            raise TaskFailed(f"fal did not answer for the result of request {task_id}")
        body = json_object(response) or {}
        if response.status_code >= 300:
            kind = response.headers.get("x-fal-error-type") or _detail_type(body)
            raise _task_failure(task_id, kind, _detail_message(body) or response.reason_phrase)
        video = body.get("video")
        url = video.get("url") if isinstance(video, Mapping) else None
        if not isinstance(url, str) or not url:
            raise TaskFailed(f"fal request {task_id} finished without a video URL")
        seed = body.get("seed")
        log.log(f"fal request {task_id} made" + (f" with seed {seed}" if seed is not None else ""))
        return Output(url, {})

    async def cancel(self, task_id: str) -> bool:
        """A queued request is removed (free); one in progress goes on and is billed."""
        try:
            status = await self._api.request("GET", f"/{APP}/requests/{task_id}/status")
            queued = (json_object(status) or {}).get("status") == "IN_QUEUE"
            response = await self._api.request("PUT", f"/{APP}/requests/{task_id}/cancel")
        except httpx.HTTPError as exc:
            logger.warning("canceling fal request %s failed: %s", task_id, type(exc).__name__)
            return False
        return queued and response.status_code == 202

    def cost_micros(self, job: ProviderJob, output: Output | None, state: AttemptState) -> int:
        """fal bills the video's tokens (w x h x fps x seconds / 1024) of a request that
        ran: succeeded, or canceled while in progress; failed requests are not billed."""
        if state not in (AttemptState.SUCCEEDED, AttemptState.CANCELED):
            return 0
        tokens = video_tokens(job.width, job.height, job.fps, job.duration_seconds)
        return self.prices.cost_micros(tokens, audio=job.audio)

    async def read_callback(self, callback: CallbackRequest) -> str | None:
        """The request id of a webhook signed by one of fal's keys, within 5 minutes."""
        headers = callback.headers
        request_id = headers.get("x-fal-webhook-request-id", "")
        user_id = headers.get("x-fal-webhook-user-id", "")
        stamp = headers.get("x-fal-webhook-timestamp", "")
        try:
            signature = bytes.fromhex(headers.get("x-fal-webhook-signature", ""))
            late = abs(time.time() - int(stamp)) > WEBHOOK_TOLERANCE_S
        except ValueError:
            return None
        if not request_id or not signature or late:
            return None
        digest = hashlib.sha256(callback.body).hexdigest()
        message = "\n".join((request_id, user_id, stamp, digest)).encode()
        for refresh in (False, True):
            for key in await self._webhook_keys(refresh=refresh):
                try:
                    key.verify(signature, message)
                except InvalidSignature:
                    continue
                return request_id
        return None

    # ---- plumbing ------------------------------------------------------------------------

    async def _read(self, path: str, log: RunLog) -> httpx.Response | None:
        """A GET, retried while fal is busy; None when it stayed busy (the task goes on)."""
        policy = RetryPolicy(_POLL_BUDGET_S, self.poll_interval_s)
        try:
            return await call(self._api, "GET", path, policy=policy, log=log, provider="fal")
        except CallFailed:
            return None

    async def _webhook_keys(self, *, refresh: bool = False) -> list[Ed25519PublicKey]:
        """fal's webhook keys, read from its JWKS at most once an hour, or once a minute
        when asked to `refresh` (a signature none of them verifies: fal may have rotated)."""
        age = time.monotonic() - self._keys_read_at
        if age < (JWKS_REFRESH_S if refresh else JWKS_TTL_S) and (
            self._keys or age < JWKS_REFRESH_S
        ):
            return self._keys
        self._keys_read_at = time.monotonic()
        try:
            async with httpx.AsyncClient(timeout=10.0, follow_redirects=False) as client:
                response = await client.get(self.jwks_url)
        except httpx.HTTPError as exc:
            logger.warning("reading fal's webhook keys failed: %s", type(exc).__name__)
            return self._keys
        keys = (json_object(response) or {}).get("keys")
        found = [
            key for entry in (keys if isinstance(keys, list) else []) if (key := _ed25519(entry))
        ]
        if found:
            self._keys = found
        return self._keys

    @property
    def _api(self) -> ClientPool:
        if self._client is None:
            raise NotAccepted("the fal provider was not started")
        return self._client


def _ed25519(entry: Any) -> Ed25519PublicKey | None:
    """One JWKS entry as an Ed25519 public key (None for any other entry)."""
    if not isinstance(entry, Mapping) or entry.get("crv") != "Ed25519":
        return None
    x = entry.get("x")
    if not isinstance(x, str):
        return None
    try:
        return Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(x + "=" * (-len(x) % 4)))
    except ValueError:  # not base64, or not 32 bytes
        return None


def _detail_type(body: Mapping[str, Any]) -> str | None:
    detail = body.get("detail")
    if isinstance(detail, list) and detail and isinstance(detail[0], Mapping):
        kind = detail[0].get("type")
        return kind if isinstance(kind, str) else None
    return None


def _detail_message(body: Mapping[str, Any]) -> str:
    detail = body.get("detail")
    if isinstance(detail, list) and detail and isinstance(detail[0], Mapping):
        return str(detail[0].get("msg") or "")
    return str(detail or "")


def _refusal(response: httpx.Response) -> Exception:
    """A submit fal answered with a refusal (never our key in the message)."""
    body = json_object(response) or {}
    status, message = response.status_code, _detail_message(body) or response.reason_phrase
    if _detail_type(body) in _CONTENT_ERRORS:
        return ContentRefused(f"fal refused the content under its content policy: {message}")
    if status == 401:
        return NotAccepted("fal refused runbase's credentials")
    if status in (402, 403):
        return NotAccepted(f"fal refused the request (HTTP {status}): {message}")
    if status == 422:
        return InputUnsupported(f"fal refused the input: {message}")
    return NotAccepted(f"fal refused the request: HTTP {status}: {message}")


def _task_failure(task_id: str, kind: Any, message: Any) -> Exception:
    text = str(message or "")
    if kind in _CONTENT_ERRORS:
        return ContentRefused(f"fal refused the content under its content policy: {text}")
    if kind == "request_timeout":
        return TaskFailed(f"fal request {task_id} timed out at fal")
    if kind == "request_cancelled":
        return TaskFailed(f"fal request {task_id} was cancelled")
    return TaskFailed(f"fal request {task_id} failed ({kind or 'unknown'}): {text}")
