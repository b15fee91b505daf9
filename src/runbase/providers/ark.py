"""`ArkProvider`: ByteDance's own Seedance on BytePlus ModelArk (or Volcengine Ark).

The worked example of a provider (`providers/base.py`):

    submit   POST /contents/generations/tasks: every parameter a top-level field, `role`
             on every image, no `--flag` text commands in the prompt, `callback_url`
             when runbase has a public URL                                 -> task id
    poll     GET  /contents/generations/tasks/{id}: queued, running -> Running;
             succeeded -> Finished; failed, expired, cancelled -> TaskFailed, or
             ContentRefused for a `...SensitiveContentDetected` code. Polls of several
             tasks that fall due together go out as one list request
             (GET /contents/generations/tasks?filter.task_ids=...): see `BatchedReads`
    result   the succeeded task's `content.video_url` (expires after 24 h) and `usage`
    cancel   DELETE /contents/generations/tasks/{id}: only a `queued` task can be
             cancelled (free); a running one goes on and is billed

ModelArk takes no idempotency key, so a submit that may have reached it without an answer
(a timeout after the request was sent) is not repeated: `SubmitUncertain`, and the run is
failed and refunded rather than paid for twice. At most 120 tasks may be queued per
account: `RUNBASE_ARK_MAX_IN_FLIGHT` defaults to 100.

The API key is a `SecretStr`: it goes into the Authorization header of API calls and
nowhere else (not into logs, errors, run logs, metadata, or the video download).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import urlencode

import httpx

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
from runbase.providers.batched_reads import BatchedReads
from runbase.providers.http_pool import ClientPool
from runbase.providers.transport import CallFailed, RetryPolicy, call, json_object, submit_request

if TYPE_CHECKING:
    from pydantic import SecretStr

    from runbase.config import Settings

__all__ = ["ArkProvider", "strip_text_commands"]

logger = logging.getLogger(__name__)

TASKS_PATH: Final = "/contents/generations/tasks"
_PROGRESS: Final = {"queued": 0.0, "running": 0.5}
_POLL_BUDGET_S: Final = 20.0
# Polls gathered into one list request: at most this many ids (the list's URL stays near
# 4 KB; ModelArk takes up to 500 a page), due within this long of the first.
_BATCH_MAX: Final = 100
_BATCH_WINDOW_S: Final = 0.1

# The legacy "text commands", long and short forms. Upstream reads them from the prompt and
# they override the top-level fields, so a user could ask for 12 s at 1080p after being
# charged for 4 s at 480p. Every `--word` token is removed; a value after it is removed too
# when it looks like one (a number, 720p, 16:9, true, ...).
_TEXT_COMMAND: Final = re.compile(
    r"(?<!\S)--[A-Za-z][\w-]*"
    r"(?:(?:=|\s+)(?:-?\d+(?:\.\d+)?[A-Za-z]*|\d+:\d+|true|false|adaptive|default|flex)(?!\S))?",
    re.IGNORECASE,
)


def strip_text_commands(prompt: str) -> tuple[str, list[str]]:
    """The prompt without `--flag [value]` text commands, and the commands removed."""
    removed = [match.group(0) for match in _TEXT_COMMAND.finditer(prompt)]
    cleaned = _TEXT_COMMAND.sub(" ", prompt)
    return re.sub(r"[ \t]{2,}", " ", cleaned).strip(), removed


class ArkProvider(PacedProvider):
    """Seedance 1.5 Pro on ModelArk. Build it with `from_settings`; it needs a key."""

    name = "ark"
    display_name = "ModelArk"
    accepts_idempotency_key = False
    supports_callbacks = True

    def __init__(
        self,
        *,
        api_key: SecretStr | None,
        base_url: str,
        model: str,
        prices: TokenPrices,
        pacing: Pacing,
    ) -> None:
        super().__init__(pacing)
        self._api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.prices = prices
        self._client: ClientPool | None = None
        self._reads: BatchedReads[dict[str, Any]] | None = None
        """Polls gathered into list requests (from `start` to `close`)."""
        self._lists_refused = False
        """ModelArk refused a list: every poll reads its task alone from then on."""
        self._finished: dict[str, dict[str, Any]] = {}
        """Succeeded task objects read by `poll`, until `result` takes them."""

    @classmethod
    def from_settings(cls, settings: Settings) -> ArkProvider:
        return cls(
            api_key=settings.ark_api_key,
            base_url=settings.ark_base_url,
            model=settings.ark_model,
            prices=TokenPrices(
                silent=settings.ark_price_silent_per_million_tokens,
                audio=settings.ark_price_audio_per_million_tokens,
            ),
            pacing=Pacing.from_settings(settings, "ark"),
        )

    def configuration_problem(self) -> str | None:
        if self._api_key is None or not self._api_key.get_secret_value():
            return "the ark provider needs RUNBASE_ARK_API_KEY"
        return None

    def check_input(self, model: str, validated_input: Mapping[str, Any]) -> None:
        """ModelArk's Seedance 1.5 Pro takes every input of the contract: every ratio,
        resolution and duration, first and last frames, audio on or off."""
        if len(validated_input.get("image_urls") or []) > 2:
            raise InputUnsupported("ModelArk takes at most two images (first and last frame)")

    async def start(self) -> None:
        problem = self.configuration_problem()
        if problem is not None:
            raise NotAccepted(problem)
        assert self._api_key is not None
        self._client = ClientPool(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {self._api_key.get_secret_value()}"},
        )
        window = min(_BATCH_WINDOW_S, self.poll_interval_s / 4)
        self._reads = BatchedReads(self._list_tasks, max_batch=_BATCH_MAX, window_s=window)

    async def close(self) -> None:
        if self._reads is not None:
            await self._reads.close()
            self._reads = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # ---- the task ------------------------------------------------------------------------

    def create_body(self, job: ProviderJob) -> dict[str, Any]:
        """The create-task body: parameters as top-level fields, never as text commands."""
        prompt, _ = strip_text_commands(job.prompt)
        content: list[dict[str, Any]] = [{"type": "text", "text": prompt}]
        roles = ("first_frame", "last_frame")
        for role, url in zip(roles, job.image_urls, strict=False):
            content.append({"type": "image_url", "image_url": {"url": url}, "role": role})
        body: dict[str, Any] = {
            "model": self.model,
            "content": content,
            "resolution": job.resolution,
            "ratio": job.aspect_ratio,
            "duration": job.duration_seconds,
            "generate_audio": job.audio,
            "seed": job.seed,
            "camera_fixed": bool(job.input.get("camera_fixed", False)),
            "watermark": False,
        }
        if job.callback_url is not None:
            body["callback_url"] = job.callback_url
        return body

    def submit_headers(self, job: ProviderJob) -> dict[str, str] | None:
        """Extra headers of the create request: none (ModelArk takes no idempotency key;
        a subclass for an upstream that does would send `job.idempotency_key` here)."""
        return None

    async def submit(self, job: ProviderJob, log: RunLog) -> str:
        _, removed = strip_text_commands(job.prompt)
        if removed:
            log.log(f"text commands removed from the prompt: {' '.join(removed)}")
        policy = RetryPolicy(self.submit_retry_s, self.poll_interval_s, retry_unsent_only=True)
        response = await submit_request(
            self._api,
            TASKS_PATH,
            policy=policy,
            log=log,
            provider=self.display_name,
            json=self.create_body(job),
            headers=self.submit_headers(job),
        )
        if response.status_code >= 300:
            raise _refusal(response)
        task_id = (json_object(response) or {}).get("id")
        if not isinstance(task_id, str) or not task_id:
            raise SubmitUncertain("ModelArk answered the submit without a task id")
        logger.info("run %s submitted to ModelArk as task %s", job.run_id, task_id)
        return task_id

    async def poll(self, task_id: str, log: RunLog) -> Running | Finished:
        task: dict[str, Any] | None = None
        if self._reads is not None and not self._lists_refused:
            try:
                task = await self._reads.read(task_id)
            except CallFailed as failed:  # ride it out: the task goes on upstream
                return Running(0.1, f"ModelArk busy ({failed.problem})")
        if task is None:  # alone in its batch, or the list did not return it
            policy = RetryPolicy(_POLL_BUDGET_S, self.poll_interval_s)
            path = f"{TASKS_PATH}/{task_id}"
            try:
                response = await call(
                    self._api, "GET", path, policy=policy, log=log, provider=self.display_name
                )
            except CallFailed as failed:
                return Running(0.1, f"ModelArk busy ({failed.problem})")
            if response.status_code == 404:
                raise TaskFailed(f"ModelArk lost task {task_id} (it is no longer found)")
            task = json_object(response)
            if response.status_code >= 300 or task is None:
                log.log(f"ModelArk answered HTTP {response.status_code} to a poll; polling on")
                return Running(0.1, "unknown")
        status = task.get("status")
        if status == "succeeded":
            self._finished[task_id] = task
            return Finished()
        if status in ("failed", "expired", "cancelled"):
            raise _task_failure(task_id, str(status), task.get("error"))
        stage = str(status) if isinstance(status, str) else "unknown"
        return Running(_PROGRESS.get(stage, 0.0), stage)

    async def _list_tasks(self, task_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The tasks of one list request, by id. A task alone is not listed (its own GET
        says as much, and tells a lost task by its 404); a list ModelArk refuses (4xx but
        429) turns batching off for good, and every poll reads its task on its own."""
        if len(task_ids) < 2 or self._lists_refused:
            return {}
        query = urlencode(
            [("page_num", 1), ("page_size", len(task_ids))]
            + [("filter.task_ids", task_id) for task_id in task_ids]
        )
        policy = RetryPolicy(_POLL_BUDGET_S, self.poll_interval_s)
        response = await call(self._api, "GET", f"{TASKS_PATH}?{query}", policy=policy)
        body = json_object(response)
        items = body.get("items") if body is not None else None
        if response.status_code >= 300 or not isinstance(items, list):
            if 400 <= response.status_code < 500 and not self._lists_refused:
                logger.warning(
                    "ModelArk refused a task list (HTTP %s): polling each task alone",
                    response.status_code,
                )
                self._lists_refused = True  # batches already waiting fall back the same way
            return {}
        wanted = set(task_ids)
        return {
            item["id"]: item
            for item in items
            if isinstance(item, dict) and item.get("id") in wanted
        }

    async def result(self, task_id: str, log: RunLog) -> Output:
        task = self._finished.pop(task_id, None)
        if task is None:  # resumed after `poll` ran elsewhere: read it once more
            if not isinstance(await self.poll(task_id, log), Finished):
                raise TaskFailed(f"ModelArk task {task_id} is not finished")
            task = self._finished.pop(task_id)
        content = task.get("content")
        video_url = content.get("video_url") if isinstance(content, Mapping) else None
        if not isinstance(video_url, str) or not video_url:
            raise TaskFailed(f"ModelArk task {task_id} succeeded without a video URL")
        usage = task.get("usage")
        log.log(f"ModelArk task {task_id} made by {task.get('model', self.model)}")
        return Output(video_url, usage if isinstance(usage, Mapping) else {})

    async def cancel(self, task_id: str) -> bool:
        """Only a queued task can be cancelled (free); a running one goes on (billed)."""
        try:
            response = await self._api.request("DELETE", f"{TASKS_PATH}/{task_id}")
        except httpx.HTTPError as exc:
            logger.warning("canceling ModelArk task %s failed: %s", task_id, type(exc).__name__)
            return False
        if response.status_code >= 300:
            logger.info("ModelArk kept task %s (HTTP %s)", task_id, response.status_code)
            return False
        return True

    def cost_micros(self, job: ProviderJob, output: Output | None, state: AttemptState) -> int:
        """ModelArk bills a task by the tokens of its video: succeeded tasks by the tokens
        it reports, a canceled running task by the tokens of the video it goes on to make;
        failed tasks are not billed."""
        if state not in (AttemptState.SUCCEEDED, AttemptState.CANCELED):
            return 0
        reported = (output.usage if output else {}).get("completion_tokens")
        tokens = (
            reported
            if isinstance(reported, int) and reported > 0
            else video_tokens(job.width, job.height, job.fps, job.duration_seconds)
        )
        return self.prices.cost_micros(tokens, audio=job.audio)

    async def read_callback(self, callback: CallbackRequest) -> str | None:
        """ModelArk does not sign callbacks: runbase's signed URL is all the proof there is,
        and the task is read back through the API before anything is done."""
        try:
            body: Any = json.loads(callback.body)
        except ValueError:
            return None
        task_id = body.get("id") if isinstance(body, dict) else None
        return task_id if isinstance(task_id, str) and task_id else None

    @property
    def _api(self) -> ClientPool:
        if self._client is None:
            raise NotAccepted("the ark provider was not started")
        return self._client


def _upstream_error(response: httpx.Response) -> tuple[str, str]:
    body = json_object(response) or {}
    error = body.get("error")
    code, message = "unknown", response.reason_phrase
    if isinstance(error, Mapping):
        code = str(error.get("code") or code)
        message = str(error.get("message") or message)
    return code, message


def _refusal(response: httpx.Response) -> Exception:
    """A create that ModelArk answered with a refusal (never our key in the message)."""
    code, message = _upstream_error(response)
    status = response.status_code
    if "SensitiveContent" in code:
        return ContentRefused(
            f"ModelArk refused the content under its content policy ({code}): {message}"
        )
    if status in (401, 403):
        return NotAccepted(f"ModelArk refused runbase's credentials ({code})")
    if status == 400 and code.startswith(("InvalidParameter", "MissingParameter")):
        return InputUnsupported(f"ModelArk refused the task: {code}: {message}")
    return NotAccepted(f"ModelArk refused the task: HTTP {status} {code}: {message}")


def _task_failure(task_id: str, status: str, error: Any) -> Exception:
    code = error.get("code") if isinstance(error, Mapping) else None
    message = error.get("message") if isinstance(error, Mapping) else None
    if status == "expired":
        return TaskFailed(f"ModelArk task {task_id} expired before it finished (TaskExpired)")
    if status == "cancelled":
        return TaskFailed(f"ModelArk task {task_id} was cancelled upstream (TaskCancelled)")
    if isinstance(code, str) and "SensitiveContent" in code:
        return ContentRefused(
            f"ModelArk refused the content under its content policy ({code}): {message or ''}"
        )
    return TaskFailed(f"ModelArk task {task_id} failed ({code or 'unknown'}): {message or ''}")
