"""Connections to hosts that strangers name: image URLs, webhook URLs, upstream video links.

Such a request starts inside our network, so it is a server-side request forgery (SSRF)
boundary. Every address a host name resolves to is checked before any connection is made
(`refusal_reason`: loopback, private, link-local where cloud metadata answers, shared,
multicast, unspecified and reserved addresses, IPv4 hidden inside IPv6 too), and the
connection then goes to the very address that was checked: the check lives in the network
backend that opens the socket (`CheckedBackend`), so a DNS answer that changes between a
check and a connect (rebinding) cannot swap in another address. The URL, Host header, TLS
SNI and certificate checks keep the real host name.

Transfers use httpcore, the HTTP engine inside httpx, directly (`checked_pool`): httpx's
transports do not take a network backend. Callers follow redirects by hand, each through
the same pool and so the same check, and never use a proxy (a proxy resolves names itself).
Code on an event loop resolves with `checked_addresses` and connects to what it answers.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Final

import httpcore
import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_SHARED_NETWORK: Final = ipaddress.IPv4Network("100.64.0.0/10")
_NAT64_NETWORKS: Final = (
    ipaddress.IPv6Network("64:ff9b::/96"),
    ipaddress.IPv6Network("64:ff9b:1::/48"),
)


def refusal_reason(address: IPAddress) -> str | None:
    """Why runbase may not connect to `address` for a stranger ("a private address", ...),
    or None for a public address."""
    if isinstance(address, ipaddress.IPv6Address):
        # IPv4 carried inside IPv6 reaches the IPv4 host: ::ffff:10.0.0.1 is 10.0.0.1 to a
        # dual-stack socket, and 6to4 or NAT64 gateways forward to the embedded address.
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and any(address in net for net in _NAT64_NETWORKS):
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            reason = refusal_reason(embedded)
            if reason is not None:
                return f"{reason} ({embedded}, carried inside IPv6)"
    if address.is_loopback:
        return "a loopback address"
    if address.is_link_local:
        return "a link-local address (where cloud metadata services answer)"
    if address.is_multicast:
        return "a multicast address"
    if address.is_unspecified:
        return "the unspecified address"
    if isinstance(address, ipaddress.IPv4Address) and address in _SHARED_NETWORK:
        return "a shared (carrier-grade NAT) address"
    if address.is_private:
        return "a private address"
    if address.is_reserved or not address.is_global:
        return "a reserved address"
    return None


class Deadline:
    """One clock for a whole transfer; every network wait is clamped to what is left."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._end = time.monotonic() + seconds

    def clamp(self, timeout: float | None, error: type[Exception]) -> float:
        left = self._end - time.monotonic()
        if left <= 0:
            raise error(f"the {self.seconds:g} s deadline passed")
        return left if timeout is None else min(timeout, left)

    def timeouts(self) -> dict[str, float]:
        left = max(self._end - time.monotonic(), 0.001)
        return {"connect": left, "read": left, "write": left, "pool": left}


class DeadlineStream(httpcore.NetworkStream):
    """A socket stream whose every read, write and TLS handshake respects the deadline."""

    def __init__(self, inner: httpcore.NetworkStream, deadline: Deadline) -> None:
        self._inner = inner
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._deadline.clamp(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._deadline.clamp(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        clamped = self._deadline.clamp(timeout, httpcore.ConnectTimeout)
        return DeadlineStream(
            self._inner.start_tls(ssl_context, server_hostname, clamped), self._deadline
        )

    def get_extra_info(self, info: str) -> object:
        return self._inner.get_extra_info(info)


class CheckedBackend(httpcore.NetworkBackend):
    """Opens connections only to checked addresses: resolve, check all, connect to one.

    `check(host, address)` raises to refuse an address. With a `deadline`, every wait
    (resolving, connecting, TLS, reads and writes) is clamped to it.
    """

    def __init__(self, check: Callable[[str, str], None], deadline: Deadline | None = None) -> None:
        self._check = check
        self._deadline = deadline
        self._inner = httpcore.SyncBackend()

    def _clamp(self, timeout: float | None, error: type[Exception]) -> float | None:
        return timeout if self._deadline is None else self._deadline.clamp(timeout, error)

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        addresses = resolve(host, port, self._clamp(timeout, httpcore.ConnectTimeout))
        _check_all(self._check, host, addresses)
        last_error: Exception = httpcore.ConnectError(f"{host} has no address")
        for address in addresses:
            try:
                stream = self._inner.connect_tcp(
                    address,  # the checked address itself, never the name again
                    port,
                    timeout=self._clamp(timeout, httpcore.ConnectTimeout),
                    local_address=local_address,
                    socket_options=socket_options,
                )
            except httpcore.ConnectError as exc:
                last_error = exc
                continue
            return stream if self._deadline is None else DeadlineStream(stream, self._deadline)
        raise last_error

    def connect_unix_socket(
        self,
        path: str,
        timeout: float | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        raise httpcore.ConnectError("connections for strangers never use unix sockets")

    def sleep(self, seconds: float) -> None:
        time.sleep(self._clamp(seconds, httpcore.PoolTimeout) or 0.0)


def resolve(host: str, port: int, timeout: float | None) -> list[str]:
    """The addresses of `host`, in the resolver's order of preference, within `timeout`.

    getaddrinfo cannot be given a timeout, so it runs in a daemon thread that is left to
    finish on its own if the deadline passes first.
    """
    literal = _literal_address(host)
    if literal is not None:
        return [literal]
    answers: list[list[str] | OSError] = []
    done = threading.Event()

    def lookup() -> None:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            answers.append(_distinct_addresses(infos))
        except OSError as exc:
            answers.append(exc)
        finally:
            done.set()

    threading.Thread(target=lookup, name="resolve-host", daemon=True).start()
    if not done.wait(timeout):
        raise httpcore.ConnectTimeout(f"resolving {host} took too long")
    answer = answers[0]
    if isinstance(answer, OSError):
        raise httpcore.ConnectError(f"{host} could not be resolved: {answer}")
    if not answer:
        raise httpcore.ConnectError(f"{host} has no address")
    return answer


async def checked_addresses(host: str, port: int, check: Callable[[str, str], None]) -> list[str]:
    """The addresses of `host` that an event loop may connect to, each passed by `check`.

    As in `CheckedBackend`: every answer is checked, and the caller connects to these very
    addresses, never to the name again. Raises OSError when the name does not resolve.
    """
    literal = _literal_address(host)
    if literal is not None:
        addresses = [literal]
    else:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        addresses = _distinct_addresses(infos)
    if not addresses:
        raise OSError(f"{host} has no address")
    _check_all(check, host, addresses)
    return addresses


def _literal_address(host: str) -> str | None:
    """`host` as an IP address when it is one ("[::1]" too), else None."""
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


def _distinct_addresses(infos: Iterable[tuple[Any, ...]]) -> list[str]:
    """The addresses of getaddrinfo's answers, once each, in its order of preference."""
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _check_all(check: Callable[[str, str], None], host: str, addresses: list[str]) -> None:
    """Every answer is checked, not just the one used: a host that resolves to a mix of
    public and private addresses is refused outright."""
    for address in addresses:
        check(host, address)


def checked_pool(
    check: Callable[[str, str], None], deadline: Deadline | None = None
) -> httpcore.ConnectionPool:
    """A connection pool whose every connection goes through `CheckedBackend(check)`."""
    return httpcore.ConnectionPool(
        ssl_context=shared_ssl_context(),
        network_backend=CheckedBackend(check, deadline),
        retries=0,
    )


def shared_ssl_context() -> ssl.SSLContext:
    """certifi's roots, or the bundle named by SSL_CERT_FILE (as everywhere in httpx).

    Built once per bundle: loading the roots costs about 30 ms of CPU, more than a whole
    small transfer, and a context is safe to share between connections and threads. Keyed
    by SSL_CERT_FILE so that a bundle named after the first call is still honoured.
    """
    cert_file = os.environ.get("SSL_CERT_FILE")
    context = _SSL_CONTEXTS.get(cert_file)
    if context is None:
        with _SSL_CONTEXTS_LOCK:  # the first burst of downloads would each build one
            context = _SSL_CONTEXTS.get(cert_file)
            if context is None:
                context = _SSL_CONTEXTS[cert_file] = httpx.create_ssl_context()
    return context


_SSL_CONTEXTS: dict[str | None, ssl.SSLContext] = {}
_SSL_CONTEXTS_LOCK = threading.Lock()


def public_only(error: Callable[[str], Exception]) -> Callable[[str, str], None]:
    """A check that refuses every non-public address with `error(message)`."""

    def check(host: str, address: str) -> None:
        reason = refusal_reason(ipaddress.ip_address(address))
        if reason is not None:
            raise error(f"{host} resolves to {address}, {reason}")

    return check


def allow_all(host: str, address: str) -> None:
    """The check for operators who allow private hosts (tests, private networks)."""
