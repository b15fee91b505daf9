"""`ReplicateProvider`: ByteDance's Seedance 1.5 Pro on Replicate's predictions API
(docs/providers.md, "Replicate").

    submit   POST /v1/models/{owner}/{name}/predictions with the contract's fields in the
             model's spelling, `webhook` (events: completed) when runbase has a public URL;
             never `Prefer: wait`                                           -> prediction id
    poll     GET /v1/predictions/{id}: starting, processing -> Running; succeeded ->
             Finished; failed (E005: ContentRefused), canceled, aborted -> TaskFailed
    result   the prediction's `output`: the video's URL (deleted after an hour)
    cancel   POST /v1/predictions/{id}/cancel

The model ignores `aspect_ratio` when it is given an image and takes the image's ratio
instead, so images are not passed through as the user sent them: each is fetched (with the
checks every image gets), centre-cropped to the run's exact size, and sent as a JPEG data
URI. The video then has the requested ratio, as the contract says.

Replicate takes no idempotency key: a create that may have reached it without an answer is
not repeated (`SubmitUncertain`). Webhooks are Standard Webhooks signed with the account's
default secret (`GET /v1/webhooks/default/secret`); `read_callback` checks them, and the
prediction is read back through the API anyway. The token goes into API calls only.
"""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final

import httpx
from PIL import Image

from runbase.core.catalog import find_model
from runbase.core.webhooks import verify
from runbase.errors import InvalidImage
from runbase.media.images import FetchPolicy, fetch_image, fit_image
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

__all__ = ["ReplicateProvider"]

logger = logging.getLogger(__name__)

_POLL_BUDGET_S: Final = 20.0
_PROGRESS: Final = {"starting": 0.1, "processing": 0.5}
# Replicate's error for moderated inputs or outputs ("... flagged as sensitive ... (E005)").
_CONTENT_MARKERS: Final = ("E005", "flagged as sensitive")


class ReplicateProvider(PacedProvider):
    """Seedance 1.5 Pro on Replicate. Build it with `from_settings`; it needs a token."""

    name = "replicate"
    display_name = "Replicate"
    accepts_idempotency_key = False
    supports_callbacks = True

    def __init__(
        self,
        *,
        api_token: SecretStr | None,
        base_url: str,
        model: str,
        prices: TokenPrices,
        pacing: Pacing,
        allow_private_image_hosts: bool = False,
    ) -> None:
        super().__init__(pacing)
        self._api_token = api_token
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.prices = prices
        self.allow_private_image_hosts = allow_private_image_hosts
        self._client: ClientPool | None = None
        self._secret: str | None = None
        self._finished: dict[str, Mapping[str, Any]] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> ReplicateProvider:
        return cls(
            api_token=settings.replicate_api_token,
            base_url=settings.replicate_base_url,
            model=settings.replicate_model,
            prices=TokenPrices(
                silent=settings.replicate_price_silent_per_million_tokens,
                audio=settings.replicate_price_audio_per_million_tokens,
            ),
            pacing=Pacing.from_settings(settings, "replicate"),
            allow_private_image_hosts=settings.allow_private_image_hosts,
        )

    def configuration_problem(self) -> str | None:
        if self._api_token is None or not self._api_token.get_secret_value():
            return "the replicate provider needs RUNBASE_REPLICATE_API_TOKEN"
        if self.model.count("/") != 1:
            return "RUNBASE_REPLICATE_MODEL must be owner/name"
        return None

    def check_input(self, model: str, validated_input: Mapping[str, Any]) -> None:
        """Replicate's model takes every ratio, resolution and duration of the contract,
        first and last frames, audio on or off, any seed."""
        if len(validated_input.get("image_urls") or []) > 2:
            raise InputUnsupported("Replicate takes at most two images (first and last frame)")

    async def start(self) -> None:
        problem = self.configuration_problem()
        if problem is not None:
            raise NotAccepted(problem)
        assert self._api_token is not None
        self._client = ClientPool(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {self._api_token.get_secret_value()}"},
        )

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # ---- the prediction ------------------------------------------------------------------

    def model_input(self, job: ProviderJob, images: Sequence[str] = ()) -> dict[str, Any]:
        """The model's input: the contract's fields in its spelling (duration in whole
        seconds), `image` and `last_frame_image` already cropped to the run's size."""
        data: dict[str, Any] = {
            "prompt": job.prompt,
            "aspect_ratio": job.aspect_ratio,
            "resolution": job.resolution,
            "duration": job.duration_seconds,
            "fps": job.fps,
            "generate_audio": job.audio,
            "seed": job.seed,
            "camera_fixed": bool(job.input.get("camera_fixed", False)),
        }
        for name, image in zip(("image", "last_frame_image"), images, strict=False):
            data[name] = image
        return data

    async def submit(self, job: ProviderJob, log: RunLog) -> str:
        self.check_input(job.model, job.input)
        images = await self._framed_images(job)
        body: dict[str, Any] = {"input": self.model_input(job, images)}
        if job.callback_url is not None:
            body |= {"webhook": job.callback_url, "webhook_events_filter": ["completed"]}
        log.progress(0.05, "submitting")
        policy = RetryPolicy(self.submit_retry_s, self.poll_interval_s, retry_unsent_only=True)
        path = f"/v1/models/{self.model}/predictions"
        response = await submit_request(
            self._api, path, policy=policy, log=log, provider=self.display_name, json=body
        )
        if response.status_code >= 300:
            raise _refusal(response)
        prediction_id = (json_object(response) or {}).get("id")
        if not isinstance(prediction_id, str) or not prediction_id:
            raise SubmitUncertain("Replicate answered the create without a prediction id")
        logger.info("run %s submitted to Replicate as prediction %s", job.run_id, prediction_id)
        return prediction_id

    async def poll(self, task_id: str, log: RunLog) -> Running | Finished:
        policy = RetryPolicy(_POLL_BUDGET_S, self.poll_interval_s)
        try:
            response = await call(
                self._api, "GET", f"/v1/predictions/{task_id}", policy=policy, log=log,
                provider=self.display_name,
            )  # fmt: skip
        except CallFailed as failed:  # ride it out: the prediction goes on upstream
            return Running(0.1, f"Replicate busy ({failed.problem})")
        if response.status_code == 404:
            raise TaskFailed(f"Replicate lost prediction {task_id} (it is no longer found)")
        prediction = json_object(response)
        if response.status_code >= 300 or prediction is None:
            log.log(f"Replicate answered HTTP {response.status_code} to a poll; polling on")
            return Running(0.1, "unknown")
        status = str(prediction.get("status"))
        if status == "succeeded":
            self._finished[task_id] = prediction
            return Finished()
        if status in ("failed", "canceled", "aborted"):
            raise _prediction_failure(task_id, status, prediction.get("error"))
        return Running(_PROGRESS.get(status, 0.1), status)

    async def result(self, task_id: str, log: RunLog) -> Output:
        prediction = self._finished.pop(task_id, None)
        if prediction is None:  # resumed after `poll` ran elsewhere: read it once more
            if not isinstance(await self.poll(task_id, log), Finished):
                raise TaskFailed(f"Replicate prediction {task_id} is not finished")
            prediction = self._finished.pop(task_id)
        output = prediction.get("output")
        url = output[0] if isinstance(output, list) and output else output
        if not isinstance(url, str) or not url:
            raise TaskFailed(f"Replicate prediction {task_id} succeeded without an output URL")
        metrics = prediction.get("metrics")
        usage = dict(metrics) if isinstance(metrics, Mapping) else {}
        log.log(f"Replicate prediction {task_id} made by {prediction.get('model', self.model)}")
        return Output(url, usage)

    async def cancel(self, task_id: str) -> bool:
        """Replicate stops the prediction; Seedance is billed by its output, so a canceled
        prediction made no video and is not billed."""
        try:
            response = await self._api.request("POST", f"/v1/predictions/{task_id}/cancel")
        except httpx.HTTPError as exc:
            logger.warning("canceling prediction %s failed: %s", task_id, type(exc).__name__)
            return False
        return (json_object(response) or {}).get("status") == "canceled"

    def cost_micros(self, job: ProviderJob, output: Output | None, state: AttemptState) -> int:
        """Succeeded predictions are billed by their video (the price table, by tokens);
        failed and canceled ones made no video and are not."""
        if state is not AttemptState.SUCCEEDED:
            return 0
        tokens = video_tokens(job.width, job.height, job.fps, job.duration_seconds)
        return self.prices.cost_micros(tokens, audio=job.audio)

    async def read_callback(self, callback: CallbackRequest) -> str | None:
        """The prediction id of a webhook signed with the account's default secret."""
        secret = await self._webhook_secret()
        if secret is None:
            return None
        if verify(secret, callback.headers, callback.body, now=int(time.time())) is None:
            return None
        try:
            body: Any = json.loads(callback.body)
        except ValueError:
            return None
        prediction_id = body.get("id") if isinstance(body, dict) else None
        return prediction_id if isinstance(prediction_id, str) and prediction_id else None

    # ---- plumbing ------------------------------------------------------------------------

    async def _framed_images(self, job: ProviderJob) -> list[str]:
        """Each image fetched, checked, cropped to the run's exact size, as a data URI."""
        policy = FetchPolicy(
            max_bytes=find_model(job.model).max_image_bytes,
            allow_private_hosts=self.allow_private_image_hosts,
        )
        framed = []
        for index, url in enumerate(job.image_urls):
            try:
                size = (job.width, job.height)
                framed.append(await asyncio.to_thread(_framed, url, index, size, policy))
            except InvalidImage as exc:
                raise ContentRefused(exc.message) from None
        return framed

    async def _webhook_secret(self) -> str | None:
        if self._secret is None:
            try:
                response = await self._api.request("GET", "/v1/webhooks/default/secret")
            except httpx.HTTPError as exc:
                logger.warning("reading Replicate's webhook secret failed: %s", type(exc).__name__)
                return None
            key = (json_object(response) or {}).get("key")
            self._secret = key if isinstance(key, str) and key.startswith("whsec_") else None
        return self._secret

    @property
    def _api(self) -> ClientPool:
        if self._client is None:
            raise NotAccepted("the replicate provider was not started")
        return self._client


def _framed(url: str, index: int, size: tuple[int, int], policy: FetchPolicy) -> str:
    pixels = fit_image(fetch_image(url, policy, index=index), *size)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


def _problem(response: httpx.Response) -> str:
    body = json_object(response) or {}
    return str(body.get("detail") or body.get("title") or response.reason_phrase)


def _refusal(response: httpx.Response) -> Exception:
    """A create Replicate answered with a refusal (never our token in the message)."""
    status, detail = response.status_code, _problem(response)
    if any(marker in detail for marker in _CONTENT_MARKERS):
        return ContentRefused(f"Replicate refused the content under its content policy: {detail}")
    if status in (401, 403):
        return NotAccepted("Replicate refused runbase's credentials")
    if status == 402:
        return NotAccepted(f"Replicate refused the prediction: {detail}")
    if status == 422:
        return InputUnsupported(f"Replicate refused the input: {detail}")
    return NotAccepted(f"Replicate refused the prediction: HTTP {status}: {detail}")


def _prediction_failure(task_id: str, status: str, error: Any) -> Exception:
    text = str(error or "")
    if any(marker in text for marker in _CONTENT_MARKERS):
        return ContentRefused(f"Replicate refused the content under its content policy: {text}")
    if status != "failed":
        return TaskFailed(f"Replicate prediction {task_id} was {status} upstream")
    return TaskFailed(f"Replicate prediction {task_id} failed: {text or 'no reason given'}")
