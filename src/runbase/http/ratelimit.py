"""Per-key moving-window rate limit (the `limits` library) and its response headers.

The contract's limit is 20 requests per 10 seconds per key over create and get together.
Every answer to an authenticated request carries `X-RateLimit-Limit`, `-Remaining` and
`-Reset` (seconds until a request slot frees up); a 429 also carries `Retry-After`.

Counts live in this process's memory, or in Redis (`RUNBASE_RATE_LIMIT_STORAGE_URL`) so that
several API replicas enforce one limit per key. In memory the library's synchronous
limiter is used: its asyncio twin starts a cleanup task with a thread hop, under the key's
lock, on almost every hit, which serialises a busy key's requests (docs/benchmarks.md).
"""

from __future__ import annotations

import math
import time

from limits import RateLimitItem, WindowStats, parse, storage, strategies
from limits.aio.storage import Storage
from limits.aio.strategies import MovingWindowRateLimiter
from starlette.requests import Request

from runbase.errors import RateLimited


class RateLimiter:
    def __init__(self, default_limit: str, storage_url: str | None = None) -> None:
        self._default = parse(default_limit)
        self._local: strategies.MovingWindowRateLimiter | None = None
        self._shared: MovingWindowRateLimiter | None = None
        if storage_url:
            # redis-py's asyncio client (the `redis` extra), not limits' default coredis.
            url = storage_url if storage_url.startswith("async+") else f"async+{storage_url}"
            shared = storage.storage_from_string(url, implementation="redispy")
            if not isinstance(shared, Storage):  # an async+ scheme always gives one
                raise ValueError(f"not an async rate-limit storage: {storage_url!r}")
            self._shared = MovingWindowRateLimiter(shared)
        else:
            self._local = strategies.MovingWindowRateLimiter(storage.MemoryStorage())
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
        allowed, stats = await self._count(item, key_id)
        reset_in = max(1, math.ceil(stats.reset_time - time.time()))
        request.state.rate_limit_headers = {
            "X-RateLimit-Limit": str(item.amount),
            "X-RateLimit-Remaining": str(stats.remaining),
            "X-RateLimit-Reset": str(reset_in),
        }
        if not allowed:
            raise RateLimited(retry_after=reset_in)

    async def _count(self, item: RateLimitItem, key_id: str) -> tuple[bool, WindowStats]:
        if self._local is not None:
            return self._local.hit(item, key_id), self._local.get_window_stats(item, key_id)
        assert self._shared is not None
        allowed = await self._shared.hit(item, key_id)
        return allowed, await self._shared.get_window_stats(item, key_id)


def rate_limit_headers(request: Request) -> dict[str, str]:
    return dict(getattr(request.state, "rate_limit_headers", {}))
