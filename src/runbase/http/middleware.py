"""The request middleware: a request id on every response, and request metrics.

Pure ASGI on purpose: Starlette's `BaseHTTPMiddleware` runs the app in a separate task and
re-streams its response, which costs more than the whole of a cached GET. This one adds a
header to the response's start message and times the call, nothing else.

It sits outside Starlette's error middleware (`RunbaseApp.build_middleware_stack`), so even
a 500 carries `X-Request-Id`.
"""

from __future__ import annotations

import os
import re
import time
from typing import Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runbase.http.metrics import Metrics
from runbase.logs import REQUEST_ID

# What we accept from a client: short, and harmless in a header and a log line.
_VALID_REQUEST_ID: Final = re.compile(rb"[A-Za-z0-9._:/+=@-]{1,128}")
_HEADER: Final = b"x-request-id"


class RequestContext:
    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = _request_id(scope)
        header = (_HEADER, request_id)
        token = REQUEST_ID.set(request_id.decode())
        status = 500
        elapsed: float | None = None

        async def send_with_id(message: Message) -> None:
            nonlocal status, elapsed
            if message["type"] == "http.response.start":
                status = message["status"]
                elapsed = time.perf_counter() - started
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(token)
            template = _route_template(scope)
            if elapsed is None:
                elapsed = time.perf_counter() - started
            self.metrics.observe_request(scope["method"], template, status, elapsed)


def _route_template(scope: Scope) -> str:
    """`/api/v1/runs/{run_id}` for `/api/v1/runs/run_01j...`; "unmatched" without a route.

    FastAPI reports the route as declared in its router, without the prefix it was included
    under, so the prefix is recovered from the path: whatever precedes the route's own part.
    """
    route = scope.get("route")
    route_path = getattr(route, "path_format", None)
    if route_path is None:
        return "unmatched"
    try:
        own_part = route_path.format(**scope.get("path_params", {}))
    except (KeyError, IndexError, ValueError):
        return str(route_path)
    path: str = scope["path"]
    if own_part and path.endswith(own_part):
        return path[: len(path) - len(own_part)] + str(route_path)
    return str(route_path)


def _request_id(scope: Scope) -> bytes:
    """The client's X-Request-Id when it is valid; otherwise a new random one."""
    for name, value in scope["headers"]:
        if name == _HEADER:
            if _VALID_REQUEST_ID.fullmatch(value):
                return bytes(value)
            break
    return os.urandom(16).hex().encode()
