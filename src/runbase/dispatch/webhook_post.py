"""One webhook POST, to an address we have checked ourselves.

A webhook URL is chosen by a customer and requested from inside our network, so the same
rules as image fetching apply (`runbase.media.images.refusal_reason`): every address the
host resolves to is checked, and the connection goes to the checked address itself, so a
DNS answer that changes in between (rebinding) cannot point us at 127.0.0.1 or the cloud
metadata service. Redirects are never followed, and no proxy is used.
"""

from __future__ import annotations

import ipaddress
import socket
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import httpcore
import httpx

from runbase.media.images import refusal_reason


class WebhookRefused(Exception):
    """The target may not be reached (a private address): retrying will not help."""


@dataclass(frozen=True)
class PostResult:
    status: int | None
    """The HTTP status, or None when no answer came (timeout, connection error)."""
    error: str | None = None


class _CheckedBackend(httpcore.NetworkBackend):
    def __init__(self, *, allow_private_hosts: bool) -> None:
        self._allow_private = allow_private_hosts
        self._inner = httpcore.SyncBackend()

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            raise httpcore.ConnectError(f"{host} could not be resolved: {exc}") from exc
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        if not self._allow_private:
            for address in addresses:  # all of them: a mix of public and private is refused
                reason = refusal_reason(ipaddress.ip_address(address))
                if reason is not None:
                    raise WebhookRefused(f"{host} resolves to {address}, {reason}")
        last_error: Exception = httpcore.ConnectError(f"{host} has no address")
        for address in addresses:
            try:
                return self._inner.connect_tcp(
                    address, port, timeout, local_address, socket_options
                )
            except httpcore.ConnectError as exc:
                last_error = exc
        raise last_error

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("webhooks never use unix sockets")

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


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
    pool = httpcore.ConnectionPool(
        ssl_context=httpx.create_ssl_context(),
        network_backend=_CheckedBackend(allow_private_hosts=allow_private_hosts),
        retries=0,
    )
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
