"""`RunbaseProvider`: forward runs to any Runbase-compatible server (runbase.net, or another
runbase) through the public runs API (docs/providers.md, "runbase").

    submit   POST /api/v1/runs {"model", "input"}                -> the upstream run's id
    poll     GET  /api/v1/runs/{id}: pending, processing -> Running; succeeded -> Finished;
             failed -> TaskFailed (ContentRefused for the user's own faults); canceled
    result   the run's `output.urls[0]`, and its `costUsd` (what the upstream charged)
    cancel   POST /api/v1/runs/{id}/cancel (an extension: only when the upstream has it)

The upstream's rate limit (`RUNBASE_RUNBASE_RATE_LIMIT`, runbase.net: 20 requests per 10 s
per key, create and get together) is one budget shared by every run in flight: each
request waits for a slot in a moving window of that size (`Pacer`), and a 429
`RATE_LIMITED` answer pauses every request for its Retry-After (1 s when it gives none)
and is sent again, so no run ever fails because of the upstream's 429s.

runbase.net documents no idempotency keys, cancel or webhooks; a runbase has all three.
`start` asks for `GET /api/v1/webhooks/secret`, which only a runbase answers: then
`Idempotency-Key` (the run id) goes with every create, so a create that got no answer is
safely sent again (the upstream replays the same run), callbacks are requested and
checked with that secret, and cancels are forwarded. Otherwise none of them are used, and
a create that may have reached the upstream without an answer is not repeated.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

import httpx
import limits

from runbase.core.webhooks import verify
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
)
from runbase.providers.http_pool import ClientPool
from runbase.providers.transport import (
    CallFailed,
    RetryPolicy,
    call,
    json_object,
    retry_after_seconds,
    submit_request,
)

if TYPE_CHECKING:
    from pydantic import SecretStr

    from runbase.config import Settings

__all__ = ["PacedPool", "Pacer", "RunbaseProvider"]

logger = logging.getLogger(__name__)

RUNS_PATH: Final = "/api/v1/runs"
_POLL_BUDGET_S: Final = 60.0
_MAX_PAUSE_S: Final = 60.0
# Failed-run codes that are the user's (their image, their prompt): not retried elsewhere.
_USERS_CODES: Final = frozenset({"invalid_image", "invalid_input", "content_refused"})
# Inputs runbase.net's public schema has; a runbase upstream also takes the extensions.
_PUBLIC_FIELDS: Final = ("prompt", "aspect_ratio", "resolution", "duration", "generate_audio")


class Pacer:
    """One request budget for every run in flight: at most `amount` requests in any window
    of `window_s` (a limit in `limits` notation), paused for everyone on a 429.

    A request counts from the moment it is sent until a window after its answer came
    back: the upstream counted it somewhere in between, so even when answers are slow or
    uneven no window of the upstream's ever sees more than its limit. Waiters are served in
    turn (asyncio.Lock is fair), so creates are not starved by polls.
    """

    def __init__(self, limit: str) -> None:
        item = limits.parse(limit)
        self.amount = item.amount
        self.window_s = float(item.get_expiry())
        self._answered: deque[float] = deque()  # when each counted request was answered
        self._in_flight = 0
        self._paused_until = 0.0
        self._turn = asyncio.Lock()
        self.throttled = 0
        """How many 429 answers were met (and ridden out)."""

    async def acquire(self) -> None:
        """Return once a request may be sent; call `release` when it is answered."""
        async with self._turn:
            while True:
                now = time.monotonic()
                if now < self._paused_until:
                    await asyncio.sleep(self._paused_until - now)
                    continue
                while self._answered and self._answered[0] <= now - self.window_s:
                    self._answered.popleft()
                if len(self._answered) + self._in_flight < self.amount:
                    self._in_flight += 1
                    return
                if self._answered:
                    await asyncio.sleep(self._answered[0] + self.window_s - now)
                else:  # the whole budget is in flight: wait for an answer
                    await asyncio.sleep(0.02)

    def release(self) -> None:
        self._in_flight -= 1
        self._answered.append(time.monotonic())

    def pause(self, seconds: float) -> None:
        self.throttled += 1
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)


class PacedPool(ClientPool):
    """A `ClientPool` whose every request waits for the pacer; a 429 `RATE_LIMITED` pauses
    every request and is sent again (a 429 `USAGE_EXCEEDED`, a quota, is answered)."""

    def __init__(self, pacer: Pacer, *, base_url: str, headers: Mapping[str, str]) -> None:
        super().__init__(base_url=base_url, headers=headers)
        self._pacer = pacer

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        backoff = 1.0
        while True:
            await self._pacer.acquire()
            try:
                response = await super().request(method, path, json=json, headers=headers)
            finally:
                self._pacer.release()
            if response.status_code != 429 or b"USAGE_EXCEEDED" in response.content:
                return response
            wait = retry_after_seconds(response) or backoff
            self._pacer.pause(min(wait, _MAX_PAUSE_S))
            backoff = min(backoff * 2, _MAX_PAUSE_S)


class RunbaseProvider(PacedProvider):
    """Seedance 1.5 Pro on a Runbase-compatible server. Build it with `from_settings`."""

    name = "runbase"
    display_name = "the upstream Runbase server"
    supports_callbacks = True

    def __init__(
        self,
        *,
        api_key: SecretStr | None,
        base_url: str,
        rate_limit: str = "20/10seconds",
        pacing: Pacing,
    ) -> None:
        super().__init__(pacing)
        self._api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.rate_limit = rate_limit
        self.accepts_idempotency_key = False
        """True once `start` found that the upstream is a runbase (it replays on the key)."""
        self.pacer: Pacer | None = None
        self._client: PacedPool | None = None
        self._secret: str | None = None
        self._extensions_known = False
        self._finished: dict[str, Mapping[str, Any]] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> RunbaseProvider:
        return cls(
            api_key=settings.runbase_api_key,
            base_url=settings.runbase_base_url,
            rate_limit=settings.runbase_rate_limit,
            pacing=Pacing.from_settings(settings, "runbase"),
        )

    @property
    def is_runbase(self) -> bool:
        """The upstream answered runbase's own extension (asked at `start`)."""
        return self._secret is not None

    def configuration_problem(self) -> str | None:
        if self._api_key is None or not self._api_key.get_secret_value():
            return "the runbase provider needs RUNBASE_RUNBASE_API_KEY"
        try:
            limits.parse(self.rate_limit)
        except ValueError:
            return f"RUNBASE_RUNBASE_RATE_LIMIT is not a rate limit: {self.rate_limit!r}"
        return None

    def check_input(self, model: str, validated_input: Mapping[str, Any]) -> None:
        """A runbase takes the whole contract. runbase.net's public schema has no seed and
        no camera_fixed, so once the upstream is known not to be a runbase, a run that asks
        for either is refused rather than made without it."""
        if not self._extensions_known or self.is_runbase:
            return
        seed = validated_input.get("seed")
        if isinstance(seed, int) and seed >= 0:
            raise InputUnsupported("the upstream Runbase server takes no seed")
        if validated_input.get("camera_fixed"):
            raise InputUnsupported("the upstream Runbase server takes no camera_fixed")

    async def start(self) -> None:
        problem = self.configuration_problem()
        if problem is not None:
            raise NotAccepted(problem)
        assert self._api_key is not None
        self.pacer = Pacer(self.rate_limit)
        self._client = PacedPool(
            self.pacer,
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {self._api_key.get_secret_value()}"},
        )
        await self._find_extensions()

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    # ---- the run ---------------------------------------------------------------------------

    def create_body(self, job: ProviderJob) -> dict[str, Any]:
        """The contract's own body: nothing to translate, only the derived values pinned (the
        ratio worked out from the image, the drawn seed) so that the upstream makes exactly
        the video that was priced here."""
        data: dict[str, Any] = {
            name: job.input[name] for name in _PUBLIC_FIELDS if name in job.input
        }
        data |= {"aspect_ratio": job.aspect_ratio, "duration": str(job.duration_seconds)}
        data["generate_audio"] = job.audio
        if job.image_urls:
            data["image_urls"] = list(job.image_urls)
        if self.is_runbase:
            data["seed"] = job.seed
            data["camera_fixed"] = bool(job.input.get("camera_fixed", False))
        body: dict[str, Any] = {"model": job.model, "input": data}
        if self.is_runbase and job.callback_url is not None:
            body |= {"webhook": job.callback_url, "webhookEventsFilter": ["completed"]}
        return body

    async def submit(self, job: ProviderJob, log: RunLog) -> str:
        if not self._extensions_known:  # the upstream did not answer at start
            await self._find_extensions()
        self.check_input(job.model, job.input)
        log.progress(0.05, "submitting")
        body = self.create_body(job)
        headers = {"Idempotency-Key": job.idempotency_key} if self.is_runbase else None
        policy = RetryPolicy(
            self.submit_retry_s, self.poll_interval_s, retry_unsent_only=not self.is_runbase
        )
        response = await submit_request(
            self._api, RUNS_PATH, policy=policy, log=log, provider=self.display_name,
            json=body, headers=headers,
        )  # fmt: skip
        if "webhook" in body and _refuses_webhook(response):
            # The upstream will not call this URL back (plain http, say): poll only.
            log.log("the upstream refused the callback URL; polling it instead")
            body = {"model": body["model"], "input": body["input"]}
            response = await submit_request(
                self._api, RUNS_PATH, policy=policy, log=log, provider=self.display_name,
                json=body, headers=headers,
            )  # fmt: skip
        if response.status_code >= 300:
            raise _refusal(response)
        run = json_object(response) or {}
        run_id = run.get("id")
        if not isinstance(run_id, str) or not run_id:
            raise SubmitUncertain("the upstream answered the create without a run id")
        logger.info("run %s submitted upstream as %s", job.run_id, run_id)
        return run_id

    async def poll(self, task_id: str, log: RunLog) -> Running | Finished:
        policy = RetryPolicy(_POLL_BUDGET_S, self.poll_interval_s)
        try:
            response = await call(
                self._api, "GET", f"{RUNS_PATH}/{task_id}", policy=policy, log=log,
                provider=self.display_name,
            )  # fmt: skip
        except CallFailed as failed:  # ride it out: the run goes on upstream
            return Running(0.1, f"upstream busy ({failed.problem})")
        if response.status_code == 404:
            raise TaskFailed(f"the upstream lost run {task_id} (it is no longer found)")
        run = json_object(response)
        if response.status_code >= 300 or run is None:
            log.log(f"the upstream answered HTTP {response.status_code} to a poll; polling on")
            return Running(0.1, "unknown")
        status = run.get("status")
        if status == "succeeded":
            self._finished[task_id] = run
            return Finished()
        if status in ("failed", "canceled"):
            raise _run_failure(task_id, str(status), run.get("error"))
        progress = run.get("progress")
        fraction = float(progress) if isinstance(progress, int | float) else 0.1
        return Running(max(0.05, min(fraction, 0.95)), str(status or "unknown"))

    async def result(self, task_id: str, log: RunLog) -> Output:
        run = self._finished.pop(task_id, None)
        if run is None:  # resumed after `poll` ran elsewhere: read it once more
            if not isinstance(await self.poll(task_id, log), Finished):
                raise TaskFailed(f"the upstream run {task_id} is not finished")
            run = self._finished.pop(task_id)
        output = run.get("output")
        urls = output.get("urls") if isinstance(output, Mapping) else None
        url = urls[0] if isinstance(urls, list) and urls else None
        if not isinstance(url, str) or not url:
            raise TaskFailed(f"the upstream run {task_id} succeeded without an output URL")
        cost = run.get("costUsd")
        usage = {"cost_micros": cost} if isinstance(cost, int) else {}
        log.log(f"the upstream run {task_id} made by {run.get('backend') or 'the upstream'}")
        return Output(url, usage)

    async def cancel(self, task_id: str) -> bool:
        """A runbase cancels and refunds in full; runbase.net has no cancel (billed)."""
        if not self.is_runbase:
            return False
        try:
            response = await self._api.request("POST", f"{RUNS_PATH}/{task_id}/cancel")
        except httpx.HTTPError as exc:
            logger.warning("canceling upstream run %s failed: %s", task_id, type(exc).__name__)
            return False
        return (json_object(response) or {}).get("status") == "canceled"

    def cost_micros(self, job: ProviderJob, output: Output | None, state: AttemptState) -> int:
        """What the upstream charged: a succeeded run's `costUsd`. A failed run is refunded
        in full upstream, a canceled one too; runbase.net, which cannot cancel, bills only
        the runs that succeed."""
        if state is AttemptState.SUCCEEDED and output is not None:
            cost = output.usage.get("cost_micros")
            return cost if isinstance(cost, int) else 0
        return 0

    async def read_callback(self, callback: CallbackRequest) -> str | None:
        """The run id of a webhook signed with the upstream account's secret."""
        if self._secret is None:
            return None
        if verify(self._secret, callback.headers, callback.body, now=int(time.time())) is None:
            return None
        try:
            body: Any = json.loads(callback.body)
        except ValueError:
            return None
        run_id = body.get("id") if isinstance(body, dict) else None
        return run_id if isinstance(run_id, str) and run_id else None

    # ---- plumbing ------------------------------------------------------------------------

    async def _find_extensions(self) -> None:
        """A runbase answers `GET /api/v1/webhooks/secret` with its account's secret (a test
        key's: the test secret, which signs the webhooks of its test runs); runbase.net
        does not have the route (404). Any other answer (down, 5xx, our key refused) says
        nothing: the question is asked again before the next create."""
        try:
            response = await self._api.request("GET", "/api/v1/webhooks/secret")
        except httpx.HTTPError as exc:
            logger.warning("the upstream did not answer: %s", type(exc).__name__)
            return
        if response.status_code not in (200, 404, 405):
            logger.warning("the upstream answered HTTP %s for its extensions", response.status_code)
            return
        key = (json_object(response) or {}).get("key") if response.status_code == 200 else None
        self._secret = key if isinstance(key, str) and key.startswith("whsec_") else None
        self.accepts_idempotency_key = self._secret is not None
        self._extensions_known = True

    @property
    def _api(self) -> PacedPool:
        if self._client is None:
            raise NotAccepted("the runbase provider was not started")
        return self._client


def _error(response: httpx.Response) -> tuple[str, str]:
    error = (json_object(response) or {}).get("error")
    if isinstance(error, Mapping):
        return str(error.get("code") or "unknown"), str(error.get("message") or "")
    return "unknown", response.reason_phrase


def _refuses_webhook(response: httpx.Response) -> bool:
    code, message = _error(response)
    return response.status_code == 400 and code == "invalid_input" and "webhook" in message


def _refusal(response: httpx.Response) -> Exception:
    """A create the upstream refused (never our key in the message)."""
    code, message = _error(response)
    status = response.status_code
    if status == 401:
        return NotAccepted(f"the upstream refused runbase's API key ({code})")
    if status == 400 and code in ("invalid_input", "invalid_request"):
        return InputUnsupported(f"the upstream refused the input: {message}")
    return NotAccepted(f"the upstream refused the run: HTTP {status} {code}: {message}")


def _run_failure(task_id: str, status: str, error: Any) -> Exception:
    code = str(error.get("code")) if isinstance(error, Mapping) else "unknown"
    message = str(error.get("message") or "") if isinstance(error, Mapping) else ""
    if code in _USERS_CODES:
        return ContentRefused(f"the upstream refused the run ({code}): {message}")
    if status == "canceled":
        return TaskFailed(f"the upstream run {task_id} was canceled there")
    return TaskFailed(f"the upstream run {task_id} failed ({code}): {message}")
