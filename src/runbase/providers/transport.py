"""Calling a provider's JSON API: retries where they are safe, and what a call may have done.

    call(client, method, path, ...)   one API call; 429, 5xx and transport errors retried
                                      with backoff (Retry-After honoured) within a budget
    submit_request(client, path, ...) a create: `call`'s giving up said as the route reads
                                      it (`SubmitUncertain` or `NotAccepted`)
    ClientPool (providers/http_pool)  the connections that carry every call of many runs

A call that gives up raises `CallFailed`, which says whether the request may have reached
the provider (`maybe_sent`): a refused connection never did, a timeout after the request
was written may have. A submit to a provider without idempotency keys must not be repeated
once it may have been sent (`retry_unsent_only`), or the task could be created (and paid
for) twice.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import httpx

from runbase.providers.base import NotAccepted, RunLog, SubmitUncertain
from runbase.providers.http_pool import ClientPool

logger = logging.getLogger(__name__)

RETRYABLE_STATUSES: Final = frozenset({429, 500, 502, 503, 504})
MAX_BACKOFF_S: Final = 30.0
# Errors raised before a byte of the request left: repeating the request is always safe.
_UNSENT: Final = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)


class CallFailed(Exception):
    """A call gave up: `problem` in plain words ("HTTP 503", "ReadTimeout")."""

    def __init__(self, problem: str, *, maybe_sent: bool, response: httpx.Response | None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.maybe_sent = maybe_sent
        self.response = response


@dataclass(frozen=True)
class RetryPolicy:
    """How long and how often a call is retried."""

    budget_s: float
    """Give up once this long has passed since the first try."""
    first_backoff_s: float = 1.0
    retry_unsent_only: bool = False
    """Never repeat a request that may have reached the provider (non-idempotent creates)."""


async def call(
    client: ClientPool,
    method: str,
    path: str,
    *,
    policy: RetryPolicy,
    log: RunLog | None = None,
    provider: str = "the provider",
    json: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    """The first answer that is not retryable (any 2xx, 4xx other than 429, ...).

    Raises `CallFailed` once the budget is spent on retryable answers, or at once for a
    request that may have been sent when `policy.retry_unsent_only` is set.
    """
    give_up_at = time.monotonic() + policy.budget_s
    attempt = 0
    while True:
        retry_after: float | None = None
        response: httpx.Response | None = None
        try:
            response = await client.request(method, path, json=json, headers=headers)
        except httpx.HTTPError as exc:
            maybe_sent = not isinstance(exc, _UNSENT)
            problem = type(exc).__name__
            if maybe_sent and policy.retry_unsent_only:
                raise CallFailed(problem, maybe_sent=True, response=None) from exc
        else:
            if response.status_code not in RETRYABLE_STATUSES:
                return response
            problem = f"HTTP {response.status_code}"
            maybe_sent = False  # an answer that says "not now" created nothing
            retry_after = retry_after_seconds(response)
        delay = min(policy.first_backoff_s * 2**attempt, MAX_BACKOFF_S)
        delay = max(delay, min(retry_after or 0.0, MAX_BACKOFF_S))
        attempt += 1
        if time.monotonic() + delay > give_up_at:
            raise CallFailed(problem, maybe_sent=maybe_sent, response=response)
        if log is not None and attempt in (1, 5, 10):
            log.log(f"{provider} busy ({problem}); retrying")
        await asyncio.sleep(delay)


async def submit_request(
    client: ClientPool,
    path: str,
    *,
    policy: RetryPolicy,
    log: RunLog,
    provider: str,
    json: Mapping[str, Any],
    headers: Mapping[str, str] | None = None,
) -> httpx.Response:
    """POST a create: the first answer that is not retryable. Giving up raises
    `SubmitUncertain` when the request may have reached `provider` (it is not sent again,
    so that it cannot be paid for twice), else `NotAccepted` (the next provider)."""
    try:
        return await call(
            client, "POST", path, policy=policy, log=log, provider=provider, json=json,
            headers=headers,
        )  # fmt: skip
    except CallFailed as failed:
        if failed.maybe_sent:
            raise SubmitUncertain(
                f"{provider} did not answer the submit ({failed.problem}); the run is not "
                "submitted again, so that it cannot be paid for twice"
            ) from None
        raise NotAccepted(f"{provider} is unavailable ({failed.problem})") from None


def retry_after_seconds(response: httpx.Response) -> float | None:
    """Retry-After in seconds (the delay form; a date is read as no advice)."""
    value = response.headers.get("retry-after", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


def json_object(response: httpx.Response) -> dict[str, Any] | None:
    """The answer's body when it is a JSON object, else None."""
    try:
        body: Any = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None
