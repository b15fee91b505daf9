"""When to send the next request: the key's rate-limit budget, retries and polling backoff.

The runs API allows 20 requests per 10 seconds per key, over create and get together, and
says so on every answer (`X-RateLimit-Limit`, `-Remaining`, `-Reset`: seconds until a slot
frees). Rather than hitting the limit and backing off, the client reads these headers and
waits before a request that would be refused. A 429 that still happens (another process
using the same key) is retried after its `Retry-After`.

Only requests that cannot do harm twice are retried: any request refused with 429
`RATE_LIMITED` (the server refuses it before doing anything), and, after no answer or a
5xx, requests that are safe to repeat: GETs, cancels, and creates, which always carry an
`Idempotency-Key` (the server answers a repeated key with the first run, never a second
charge; a 409 `idempotency_key_in_use` means the first is still being handled, so it is
retried too). A POST without a key is never resent. `USAGE_EXCEEDED` is a daily quota:
waiting seconds cannot help, so it is raised.

Everything here is arithmetic on clock readings, shared by the sync and async clients.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Iterator

import httpx

from runbase.client._errors import IdempotencyKeyInUse, RateLimited, ServerError

# Polling: first look soon (short runs), then settle at the contract's advice of 1-2 s.
FIRST_POLL_S = 0.5
POLL_GROWTH = 1.5
MAX_POLL_S = 2.0
# Retries without a server hint: 0.5, 1, 2, 4 ... seconds, capped.
FIRST_RETRY_S = 0.5
MAX_RETRY_S = 30.0


class RateLimitBudget:
    """What the server last said about this key's budget, and when it said it.

    One budget per client, shared by its threads or tasks; a lock keeps the numbers
    consistent, never held while sleeping.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._remaining: int | None = None  # None: not known yet, so do not wait
        self._frees_at = 0.0  # monotonic time when the next slot frees

    def observe(self, headers: httpx.Headers, now: float) -> None:
        """Take in the X-RateLimit-* headers of an answer (absent on other servers)."""
        remaining = _read_number(headers.get("x-ratelimit-remaining"))
        reset = _read_number(headers.get("x-ratelimit-reset"))
        if remaining is None or reset is None:
            return
        with self._lock:
            self._remaining = int(remaining)
            self._frees_at = now + reset

    def reserve(self, now: float) -> float:
        """Seconds to wait before sending one request; counts the request as sent.

        Counting before the answer comes keeps concurrent callers of one client from all
        spending the last slot at once.
        """
        with self._lock:
            if self._remaining is None:
                return 0.0
            if self._remaining > 0:
                self._remaining -= 1
                return 0.0
            return max(0.0, self._frees_at - now)

    def poll_delay(self, wanted: float, now: float) -> float:
        """Stretch a polling interval so that the budget left lasts until a slot frees.

        One waiter never spends the whole budget, which leaves room for the creates and
        polls of other runs on the same key.
        """
        with self._lock:
            if self._remaining is None:
                return wanted
            until_free = max(0.0, self._frees_at - now)
            if self._remaining == 0:
                return max(wanted, until_free)
            return max(wanted, until_free / self._remaining)


def poll_delays() -> Iterator[float]:
    """0.5, 0.75, 1.1, 1.7, 2, 2, ... seconds between polls of one run."""
    delay = FIRST_POLL_S
    while True:
        yield delay
        delay = min(MAX_POLL_S, delay * POLL_GROWTH)


def retry_delay(attempt: int, retry_after: float | None) -> float:
    """Seconds before retry number `attempt` (0-based): the server's hint, or exponential.

    A little jitter keeps clients that share a key from retrying in lockstep.
    """
    if retry_after is not None:
        base = retry_after
    else:
        base = min(MAX_RETRY_S, FIRST_RETRY_S * 2**attempt)
    return base + random.uniform(0, 0.25)


# No answer, for a reason that may pass: not a malformed URL, which would fail again.
TRANSIENT_ERRORS: tuple[type[httpx.TransportError], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)


def may_retry(error: Exception, *, resendable: bool) -> bool:
    """Whether a request that ended in `error` may be sent again.

    `resendable`: repeating the request cannot do harm twice (a GET, a cancel, a create with
    an Idempotency-Key). Rate limiting refuses a request before it does anything, so any
    request may be retried after it.
    """
    if isinstance(error, RateLimited):
        return True
    if not resendable:
        return False
    if isinstance(error, httpx.TransportError):
        return isinstance(error, TRANSIENT_ERRORS)
    return isinstance(error, ServerError | IdempotencyKeyInUse)


def _read_number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
