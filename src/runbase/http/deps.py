"""What routes get from the app: the services the lifespan built, and the caller's key.

`ApiKey` is the one way a route of the runs API (and of the compatible surfaces) learns
who calls: a `Security` dependency on `api_key`, so the OpenAPI document declares the
Bearer scheme on every operation that takes a key. Its check is `authorize`, in the
contract's order: Authorization header (401 missing_api_key), key valid and enabled (401
invalid_api_key), IP allowlist (403 ip_not_allowed), then the per-key rate limit (429
RATE_LIMITED); whatever the route reads next (a body, a query) comes after. The hot
routes (`http/hot_routes.py`) call the same object themselves, without FastAPI's
dependency solving.
"""

from __future__ import annotations

import asyncio
import ipaddress
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request, Security
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.security.base import SecurityBase

from runbase.config import Settings
from runbase.core.keys import KeyRecord, check_key, find_key
from runbase.core.seedance import PriceRates
from runbase.dispatch.signals import RunSignals
from runbase.dispatch.wakeup import WorkSignal
from runbase.errors import MissingApiKey
from runbase.http.ratelimit import RateLimiter
from runbase.storage.blobs import BlobStore
from runbase.storage.db import Database

if TYPE_CHECKING:
    from runbase.dispatch.pools import Pools
    from runbase.dispatch.worker import Worker


@dataclass
class Services:
    """What the lifespan builds and routes use; one per app."""

    settings: Settings
    database: Database
    blobs: BlobStore
    rate_limiter: RateLimiter
    key_cache: KeyCache
    signals: RunSignals = field(default_factory=RunSignals)
    """Wakes requests waiting on a run when this process's workers change it."""
    stopping: asyncio.Event = field(default_factory=asyncio.Event)
    """Set at shutdown: /readyz answers 503 from then on."""
    workers: list[Worker] = field(default_factory=list)
    worker_tasks: list[asyncio.Task[None]] = field(default_factory=list)
    work: WorkSignal = field(default_factory=WorkSignal)
    """Wakes this process's idle workers when a run is created."""
    pools: Pools | None = None
    """This process's workers and provider gateway (None on an API-only server)."""

    @property
    def price_rates(self) -> PriceRates:
        """The prices the settings name (`RUNBASE_PRICE_*`), as the catalog reads them."""
        return PriceRates(
            silent=self.settings.price_silent_per_million_tokens,
            audio=self.settings.price_audio_per_million_tokens,
        )


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


async def _services_dependency(request: Request) -> Services:
    return get_services(request)


ServicesDep = Annotated[Services, Depends(_services_dependency)]


def client_ip(request: Request, trusted_proxies: list[str]) -> str | None:
    """The socket peer, or, behind a trusted proxy, the nearest untrusted X-Forwarded-For hop."""
    peer = request.client.host if request.client else None
    if not trusted_proxies or peer is None or not _is_trusted(peer, trusted_proxies):
        return peer
    hops = [hop.strip() for hop in request.headers.get("x-forwarded-for", "").split(",")]
    for hop in reversed([hop for hop in hops if hop]):
        if not _is_trusted(hop, trusted_proxies):
            return hop
    return peer


def _is_trusted(address: str, trusted_proxies: list[str]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(ip in ipaddress.ip_network(block, strict=False) for block in trusted_proxies)


async def authorize(request: Request) -> KeyRecord:
    """The caller's key, after the auth, allowlist and rate-limit checks (in that order)."""
    services = get_services(request)
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        raise MissingApiKey()
    key = services.key_cache.get(secret)
    if key is None:
        key = await services.database.read(lambda connection: find_key(connection, secret))
        if key is not None:
            services.key_cache.put(secret, key)
    check_key(key, client_ip(request, services.settings.trusted_proxies))
    assert key is not None
    await services.rate_limiter.hit(request, key.id, key.rate_limit)
    return key


class ApiKeyAuth(SecurityBase):
    """The API key as a security scheme: documented as HTTP Bearer, checked by `authorize`.

    One object serves both dispatch paths. FastAPI finds it in a route's signature (through
    `ApiKey`), declares the scheme in the OpenAPI document and calls it before the route;
    the hot routes call it directly, because on a poll FastAPI's dependency solving costs
    as much as the database read (docs/benchmarks.md). A `SecurityBase` and not FastAPI's
    `HTTPBearer`: that one answers a bad header with its own 403, outside the envelope and
    out of the contract's order.
    """

    def __init__(self) -> None:
        self.scheme_name = "ApiKey"
        self.model = HTTPBearerModel(
            bearerFormat="sk-live-... or sk-test-...",
            description="An API key (`runbase keys create`); test keys run test-mode runs.",
        )

    async def __call__(self, request: Request) -> KeyRecord:
        return await authorize(request)


api_key = ApiKeyAuth()
ApiKey = Annotated[KeyRecord, Security(api_key)]
"""The caller's checked key; a route that declares it needs one."""


class KeyCache:
    """Keys found recently, so that a client's every request need not read its key.

    An entry lives `ttl_s` seconds: disabling a key or changing its allowlist takes effect
    within that time, on every server process. Only found keys are cached.
    """

    def __init__(self, ttl_s: float = 1.0, max_entries: int = 10_000) -> None:
        self._ttl_s = ttl_s
        self._max_entries = max_entries
        self._entries: dict[str, tuple[float, KeyRecord]] = {}

    def get(self, secret: str) -> KeyRecord | None:
        entry = self._entries.get(secret)
        if entry is None or entry[0] < time.monotonic():
            return None
        return entry[1]

    def put(self, secret: str, key: KeyRecord) -> None:
        if len(self._entries) >= self._max_entries:
            self._entries.clear()
        self._entries[secret] = (time.monotonic() + self._ttl_s, key)
