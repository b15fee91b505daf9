"""One webhook POST, to an address we have checked ourselves.

A webhook URL is chosen by a customer and requested from inside our network, so the same
rules as image fetching apply (`runbase.outbound`): every address the host resolves to is
checked, and the connection goes to the checked address itself, so a DNS answer that
changes in between (rebinding) cannot point us at 127.0.0.1 or the cloud metadata service.
Redirects are never followed, and no proxy is used.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import httpcore
import httpx

from runbase.outbound import allow_all, checked_pool, public_only


class WebhookRefused(Exception):
    """The target may not be reached (a private address): retrying will not help."""


@dataclass(frozen=True)
class PostResult:
    status: int | None
    """The HTTP status, or None when no answer came (timeout, connection error)."""
    error: str | None = None


def post_webhook(
    url: str,
    body: bytes,
    headers: Mapping[str, str],
    *,
    timeout_s: float,
    allow_private_hosts: bool,
) -> PostResult:
    """POST `body` to `url` (blocking; run it in a thread). Raises `WebhookRefused`."""
    parsed = httpx.URL(url)
    target = httpcore.URL(
        scheme=parsed.raw_scheme, host=parsed.raw_host, port=parsed.port, target=parsed.raw_path
    )
    pool = checked_pool(allow_all if allow_private_hosts else public_only(WebhookRefused))
    timeouts = {"connect": timeout_s, "read": timeout_s, "write": timeout_s, "pool": timeout_s}
    try:
        with pool:
            response = pool.request(
                "POST",
                target,
                headers=[(name.encode(), value.encode()) for name, value in headers.items()],
                content=body,
                extensions={"timeout": timeouts},
            )
    except httpcore.TimeoutException as exc:
        return PostResult(None, f"no answer within {timeout_s:g} s ({type(exc).__name__})")
    except (httpcore.NetworkError, httpcore.ProtocolError, httpcore.UnsupportedProtocol) as exc:
        return PostResult(None, str(exc) or type(exc).__name__)
    return PostResult(response.status)
