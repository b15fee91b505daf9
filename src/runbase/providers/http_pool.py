"""`ClientPool`: the keep-alive HTTP/1.1 connections that carry every API call of a
provider's runs.

A gateway with a thousand runs in flight makes hundreds of small calls a second to one
host, so the cost of each call is what counts: measured (docs/benchmarks.md, "Gateway"),
httpx's client layer and httpcore's pool (anyio locks and cancel scopes, a pool that does
work in the square of its size on every request) cost several times the call itself. This
is a small client for that one job, on asyncio's transports and the `httptools` parser
that uvicorn already uses:

- up to `max_connections` connections to the API's origin, kept alive while used and
  closed after 4 s idle (before the 5 s after which many servers drop them, so that a
  submit rarely goes out on a connection the server is closing);
- when all are busy, a submit or a cancel (any method but GET) goes before the waiting
  polls: a run's upstream clock starts at its submit, so a submit queued behind a burst of
  a thousand polls delays its whole run, while a poll a second late costs nothing until
  its task ends (docs/benchmarks.md, "The gateway");
- a request either gets a whole response (status, headers, body; Content-Length or
  chunked) or raises the httpx error it stands for: `ConnectError` / `ConnectTimeout`
  (never sent), `ReadTimeout` / `RemoteProtocolError` (it may have been sent);
- TLS with the shared context of `runbase.outbound`; no redirects, no proxies, no
  cookies, no compression: provider APIs answer JSON directly.

Answers are plain `httpx.Response` objects, so providers read them as usual. `stream`
feeds a GET's answer to a `BodySink` as it arrives instead (the video downloads,
`providers.download`), and a pool given `resolve` connects only to the addresses it answers
(the public-address check of `runbase.outbound`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json as jsonlib
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Final, Protocol, cast
from urllib.parse import urlsplit

import httptools
import httpx

from runbase.outbound import shared_ssl_context

__all__ = ["BodySink", "ClientPool"]

IDLE_SECONDS: Final = 4.0
Headers = list[tuple[bytes, bytes]]


class BodySink(Protocol):
    """Where a response's body goes instead of memory. An exception raised by either
    method ends the request with it, and the connection is closed."""

    def head(self, status: int, headers: Headers) -> None:
        """The status line and headers, before any of the body."""

    def write(self, chunk: bytes) -> None:
        """The next piece of the body."""


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: one request at a time, its response into a future."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.idle_since = time.monotonic()
        self._parser = httptools.HttpResponseParser(self)
        self._answer: asyncio.Future[tuple[int, Headers, bytes]] | None = None
        self._sink: BodySink | None = None
        self._headers: Headers = []
        self._body: list[bytes] = []
        self._status = 0
        self._headers_done = False
        self.reusable = False

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"malformed response: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        unframed = not any(
            name.lower() in (b"content-length", b"transfer-encoding") for name, _ in self._headers
        )
        if self._headers_done and unframed and self._answer is not None and not self._answer.done():
            # A body without a length ends where the connection does; one with a length (or
            # chunks) cut short is not an answer: the request may have been taken.
            self._answer.set_result((self._status, self._headers, b"".join(self._body)))
        self._fail(httpx.RemoteProtocolError("the server closed the connection"))

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name, value))

    def on_headers_complete(self) -> None:
        self._status = self._parser.get_status_code()
        self._headers_done = True
        if self._sink is not None:
            self._feed(self._sink.head, self._status, self._headers)

    def on_body(self, body: bytes) -> None:
        if self._sink is None:
            self._body.append(body)
        elif self._answer is not None and not self._answer.done():
            self._feed(self._sink.write, body)

    def on_message_complete(self) -> None:
        self.reusable = self._parser.should_keep_alive()
        if self._answer is not None and not self._answer.done():
            self._answer.set_result((self._status, self._headers, b"".join(self._body)))

    # the client's side
    def is_usable(self) -> bool:
        return (
            self.transport is not None
            and not self.transport.is_closing()
            and time.monotonic() - self.idle_since < IDLE_SECONDS
        )

    def send(
        self, data: bytes, sink: BodySink | None = None
    ) -> asyncio.Future[tuple[int, Headers, bytes]]:
        assert self.transport is not None
        self._answer = asyncio.get_running_loop().create_future()
        self._sink = sink
        self._headers, self._body, self.reusable = [], [], False
        self._headers_done = False
        self._parser = httptools.HttpResponseParser(self)
        self.transport.write(data)
        return self._answer

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def _fail(self, error: Exception) -> None:
        if self._answer is not None and not self._answer.done():
            self._answer.set_exception(error)

    def _feed(self, method: Callable[..., None], *args: Any) -> None:
        """Call the sink; what it raises ends the request (never the parser's loop)."""
        try:
            method(*args)
        except Exception as exc:
            self._fail(exc)
            self.close()


class ClientPool:
    """Calls to one API origin (`base_url`), with `headers` on every request."""

    def __init__(
        self,
        *,
        base_url: str,
        headers: Mapping[str, str],
        timeout: float = 30.0,
        max_connections: int = 32,
        resolve: Callable[[str, int], Awaitable[list[str]]] | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) base URL: {base_url!r}")
        self._tls = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._tls else 80)
        default_port = self._port == (443 if self._tls else 80)
        host = f"[{self._host}]" if ":" in self._host else self._host  # IPv6
        authority = host if default_port else f"{host}:{self._port}"
        self._origin = f"{parts.scheme}://{authority}"
        self._prefix = parts.path.rstrip("/")
        self._fixed = f"Host: {authority}\r\n" + "".join(
            f"{name}: {value}\r\n" for name, value in headers.items()
        )
        self._timeout = timeout
        self._resolve = resolve
        self._idle: list[_Connection] = []
        self._lanes = _Lanes(max_connections)
        self._closed = False

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """One request: `path` under the base URL, or an absolute URL of the same origin."""
        body = b"" if json is None else jsonlib.dumps(json, separators=(",", ":")).encode()
        head = f"{method} {self._target(path)} HTTP/1.1\r\n{self._fixed}"
        if headers:
            head += "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        if json is not None:
            head += "Content-Type: application/json\r\n"
        if body or method in ("POST", "PUT", "PATCH"):
            head += f"Content-Length: {len(body)}\r\n"
        data = head.encode("latin-1") + b"\r\n" + body
        async with self._lanes.held(first=method != "GET"):
            status, raw_headers, content = await self._exchange(data)
        return httpx.Response(status, headers=raw_headers, content=content)

    async def stream(self, path: str, sink: BodySink, *, timeout: float) -> float:
        """GET `path` with its answer (status, headers, body) fed to `sink` as it arrives,
        all within `timeout` seconds from when a connection is free (a wait for one does
        not count). Answers the seconds it took from then."""
        data = f"GET {self._target(path)} HTTP/1.1\r\n{self._fixed}\r\n".encode("latin-1")
        async with self._lanes.held(first=False):
            started = time.monotonic()
            await self._exchange(data, sink=sink, timeout=timeout)
            return time.monotonic() - started

    async def _exchange(
        self, data: bytes, *, sink: BodySink | None = None, timeout: float | None = None
    ) -> tuple[int, Headers, bytes]:
        """Send `data` on a connection (the caller holds a lane). `timeout` bounds connect
        and answer together; without it, each gets the pool's."""
        started = time.monotonic()
        limit = self._timeout if timeout is None else timeout
        connection = await self._connection(limit)
        left = limit if timeout is None else limit - (time.monotonic() - started)
        try:
            answer = await asyncio.wait_for(connection.send(data, sink), max(left, 0.001))
        except TimeoutError:
            connection.close()
            raise httpx.ReadTimeout(f"no answer within {limit:g} s") from None
        except BaseException:
            connection.close()
            raise
        if connection.reusable and not self._closed:
            connection.idle_since = time.monotonic()
            self._idle.append(connection)
        else:
            connection.close()
        return answer

    async def aclose(self) -> None:
        """Close the idle connections; those in use close when their request ends."""
        self._closed = True
        for connection in self._idle:
            connection.close()
        self._idle.clear()

    def _target(self, path: str) -> str:
        if path.startswith("/") or "://" not in path:  # a query may hold "://"
            return self._prefix + path
        if not path.startswith(self._origin + "/"):
            raise ValueError("ClientPool only calls its own origin")
        return path[len(self._origin) :]

    async def _connection(self, timeout: float) -> _Connection:
        while self._idle:
            connection = self._idle.pop()
            if connection.is_usable():
                return connection
            connection.close()
        try:
            return await asyncio.wait_for(self._connect(), timeout)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"connecting took over {timeout:g} s") from None
        except OSError as exc:
            raise httpx.ConnectError(f"connecting failed: {exc.strerror or exc}") from exc

    async def _connect(self) -> _Connection:
        """A new connection: to the host, or to the first of the addresses `resolve`
        answers that accepts (TLS still checks the host's name)."""
        loop = asyncio.get_running_loop()
        addresses = (
            [self._host] if self._resolve is None else await self._resolve(self._host, self._port)
        )
        for index, address in enumerate(addresses):
            try:
                _, protocol = await loop.create_connection(
                    _Connection,
                    address,
                    self._port,
                    ssl=shared_ssl_context() if self._tls else None,
                    server_hostname=self._host if self._tls else None,
                )
                return protocol
            except OSError:
                if index == len(addresses) - 1:
                    raise
        raise OSError(f"{self._host} has no address")


class _Lanes:
    """A semaphore whose waiters marked `first` are served before the others (each kind in
    the order it came)."""

    def __init__(self, size: int) -> None:
        self._free = size
        self._first: deque[asyncio.Future[None]] = deque()
        self._later: deque[asyncio.Future[None]] = deque()

    async def take(self, *, first: bool) -> None:
        if self._free > 0 and not self._first and not self._later:
            self._free -= 1
            return
        waiter = asyncio.get_running_loop().create_future()
        (self._first if first else self._later).append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():  # handed a lane, then canceled
                self.give()
            raise

    @contextlib.asynccontextmanager
    async def held(self, *, first: bool) -> AsyncIterator[None]:
        await self.take(first=first)
        try:
            yield
        finally:
            self.give()

    def give(self) -> None:
        """Hand the lane to the next waiter, or free it."""
        for waiters in (self._first, self._later):
            while waiters:
                waiter = waiters.popleft()
                if not waiter.done():  # a canceled waiter's future is done
                    waiter.set_result(None)
                    return
        self._free += 1
