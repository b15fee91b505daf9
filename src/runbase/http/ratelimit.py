"""Per-key moving-window rate limit (the `limits` library) and its response headers.

The contract's limit is 20 requests per 10 seconds per key over create and get together.
Every answer to an authenticated request carries `X-RateLimit-Limit`, `-Remaining` and
`-Reset` (seconds until a request slot frees up); a 429 also carries `Retry-After`.

Counts live in this process's memory, or in Redis (`RUNBASE_RATE_LIMIT_STORAGE_URL`) so that
several API replicas enforce one limit per key. In Redis the library's moving window does
the counting. In memory it is `MovingWindows`, the same rule in a few lines: the library's
memory storage takes a lock per hit and restarts a timer thread every 10 ms to expire
entries, and waiting on that thread for the lock and the GIL made the limiter a third of
a poll's time (docs/benchmarks.md). Requests are counted on the event loop's thread only,
so the windows need no lock.
"""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable

from limits import RateLimitItem, parse, storage
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from starlette.requests import Request

from runbase.errors import RateLimited


class MovingWindows:
    """Per key and limit, the times of the requests counted within the window, oldest first.

    A request is counted when fewer than the limit's amount were counted in its last
    period (the limits library's moving window); a refused one is not counted. A window
    holds at most the amount, and drops times as they leave it.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._times: dict[tuple[str, int, int], deque[float]] = {}

    def hit(self, item: RateLimitItem, key_id: str) -> tuple[bool, int, float]:
        """Count a request if the window has room: (counted, requests left, seconds until
        the oldest counted request leaves the window)."""
        now = self._clock()
        amount, period = item.amount, item.get_expiry()
        window = (key_id, amount, period)
        times = self._times.get(window)
        if times is None:
            times = self._times[window] = deque()
        while times and times[0] <= now - period:
            times.popleft()
        allowed = len(times) < amount
        if allowed:
            times.append(now)
        reset_in = times[0] + period - now if times else float(period)
        return allowed, amount - len(times), reset_in


class RateLimiter:
    def __init__(self, default_limit: str, storage_url: str | None = None) -> None:
        self._default = parse(default_limit)
        self._local: MovingWindows | None = None
        self._shared: MovingWindowRateLimiter | None = None
        if storage_url:
            # redis-py's asyncio client (the `redis` extra), not limits' default coredis.
            url = storage_url if storage_url.startswith("async+") else f"async+{storage_url}"
            shared = storage.storage_from_string(url, implementation="redispy")
            if not isinstance(shared, Storage):  # an async+ scheme always gives one
                raise ValueError(f"not an async rate-limit storage: {storage_url!r}")
            self._shared = MovingWindowRateLimiter(shared)
        else:
            self._local = MovingWindows()
        self._items: dict[str, RateLimitItem] = {}

    def _item(self, override: str | None) -> RateLimitItem:
        if override is None:
            return self._default
        if override not in self._items:
            self._items[override] = parse(override)
        return self._items[override]

    async def hit(self, request: Request, key_id: str, override: str | None = None) -> None:
        """Count one request for this key; raise `RateLimited` when over the limit."""
        item = self._item(override)
        if self._local is not None:
            allowed, remaining, reset_in = self._local.hit(item, key_id)
        else:
            allowed, remaining, reset_in = await self._count_shared(item, key_id)
        reset_seconds = max(1, math.ceil(reset_in))
        request.state.rate_limit_headers = {
            "X-RateLimit-Limit": str(item.amount),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": str(reset_seconds),
        }
        if not allowed:
            raise RateLimited(retry_after=reset_seconds)

    async def _count_shared(self, item: RateLimitItem, key_id: str) -> tuple[bool, int, float]:
        assert self._shared is not None
        allowed = await self._shared.hit(item, key_id)
        stats = await self._shared.get_window_stats(item, key_id)
        return allowed, stats.remaining, stats.reset_time - time.time()


def rate_limit_headers(request: Request) -> dict[str, str]:
    return dict(getattr(request.state, "rate_limit_headers", {}))
