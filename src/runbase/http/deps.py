"""Dependencies that routes declare with `Annotated` aliases.

`CurrentKey` is the contract's check order for every runs endpoint: Authorization header
(401 missing_api_key), key valid and enabled (401 invalid_api_key), IP allowlist (403
ip_not_allowed), then the per-key rate limit (429 RATE_LIMITED).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from runbase.config import Settings
from runbase.core.keys import authenticate_key
from runbase.errors import MissingApiKey
from runbase.http.ratelimit import RateLimiter
from runbase.storage.blobs import LocalBlobStore
from runbase.storage.db import Database
from runbase.storage.tables import ApiKeyRow


@dataclass
class Services:
    """What the lifespan builds and routes use; one per app."""

    settings: Settings
    database: Database
    blobs: LocalBlobStore
    rate_limiter: RateLimiter


async def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


ServicesDep = Annotated[Services, Depends(get_services)]


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


async def get_current_key(request: Request, services: ServicesDep) -> ApiKeyRow:
    header = request.headers.get("authorization", "")
    scheme, _, secret = header.partition(" ")
    secret = secret.strip()
    if scheme.lower() != "bearer" or not secret:
        raise MissingApiKey()
    address = client_ip(request, services.settings.trusted_proxies)
    key = await services.database.read(lambda session: authenticate_key(session, secret, address))
    await services.rate_limiter.hit(request, key.id, key.rate_limit)
    return key


CurrentKey = Annotated[ApiKeyRow, Depends(get_current_key)]
