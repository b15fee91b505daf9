"""The two requests that make most of an API's traffic, `GET .../runs/{id}` (polling) and
`POST .../runs`, dispatched straight to their endpoint functions.

FastAPI's routing, middleware and dependency solving cost as much as everything else a
poll does (docs/benchmarks.md), so these two skip them. The endpoints stay registered
with FastAPI as well, for the OpenAPI document and for HEAD; this only finds them sooner.
Errors become the envelope through the same function as on every other route, and the
route goes into the scope so that request metrics label it as FastAPI would.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from runbase.http.errors import error_response_for
from runbase.http.routes import runs

_PREFIXES = ("/api/v1/runs", "/v1/runs")


class HotRoutes:
    """ASGI: the hot routes here, everything else to `app` (the FastAPI stack)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        # The routes as declared (without prefix), for the metrics label.
        declared = {
            route.endpoint: route for route in runs.router.routes if isinstance(route, APIRoute)
        }
        self._read_route = declared[runs.read_run]
        self._create_route = declared[runs.create_run]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            found = self._match(scope["method"], scope["path"])
            if found is not None:
                await self._serve(scope, receive, send, *found)
                return
        await self.app(scope, receive, send)

    def _match(
        self, method: str, path: str
    ) -> tuple[APIRoute, Callable[[Request], Awaitable[Response]]] | None:
        for prefix in _PREFIXES:
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix) :]
            if method == "POST" and not rest:
                return self._create_route, runs.create_run
            if method == "GET" and rest.startswith("/") and len(rest) > 1 and "/" not in rest[1:]:
                return self._read_route, _read_run
        return None

    async def _serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        route: APIRoute,
        endpoint: Callable[[Request], Awaitable[Response]],
    ) -> None:
        scope["route"] = route
        if route.path.endswith("{run_id}"):
            scope["path_params"] = {"run_id": scope["path"].rsplit("/", 1)[1]}
        request = Request(scope, receive)
        try:
            response = await endpoint(request)
        except Exception as exc:
            response = error_response_for(request, exc)
        await response(scope, receive, send)


async def _read_run(request: Request) -> Response:
    return await runs.read_run(request.path_params["run_id"], request)
