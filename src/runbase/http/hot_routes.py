"""The two requests that make most of an API's traffic, `GET .../runs/{id}` (polling) and
`POST .../runs`, found without the router's scan and served without FastAPI's dependency
solving, inside the middleware stack like every other request.

    RequestContext, AdminGuard             (http/app.py: request ids, metrics, perimeter)
      ServerErrorMiddleware ... user middleware (CORS, ...) ... ExceptionMiddleware
        app.router                          Starlette calls `router.middleware_stack`
          HotRoutes                         <- here: the two hot routes
          the router's scan, FastAPI's handlers (everything else)

`HotRoutes` is a layer of the router's own stack (what `Router(middleware=...)` builds),
not of the app's: every middleware an app adds, now or later, sees these requests as it
sees all others, and their errors reach the app's exception handlers (the envelope) the
same way. It only decides sooner: for a hot request it does what the router and
FastAPI's handler would do with the same route, cheaper. It puts the declared route in
the scope (request metrics label it as the router would), checks the key with the
route's own security object (`deps.api_key`: the object the OpenAPI document declares),
and calls the endpoint. At start-up it checks that each hot endpoint declares exactly
that dependency, so the document and this path cannot drift apart.

Measured effect: docs/benchmarks.md ("The runs API").
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from runbase.http.deps import api_key
from runbase.http.routes import runs

PREFIXES = ("/api/v1/runs", "/v1/runs")
"""Where `routes/runs.py` is included (http/app.py)."""


@dataclass(frozen=True)
class _HotRoute:
    route: APIRoute
    """As declared (path without prefix): what the router would put in the scope."""
    endpoint: Callable[..., Awaitable[Response]]


def _hot_route(endpoint: Callable[..., Awaitable[Response]]) -> _HotRoute:
    """The route of `endpoint` in `runs.router`, checked to take what this layer gives."""
    [route] = [r for r in runs.router.routes if isinstance(r, APIRoute) and r.endpoint is endpoint]
    dependencies = [dependency.call for dependency in route.dependant.dependencies]
    if dependencies != [api_key] or route.dependencies:
        raise TypeError(f"hot route {route.path} must depend on deps.ApiKey and nothing else")
    return _HotRoute(route, endpoint)


class HotRoutes:
    """ASGI, in the router's stack: the hot routes here, everything else to `app` (the
    router itself)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self._create = _hot_route(runs.create_run)
        self._read = _hot_route(runs.read_run)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            found = self._match(scope["method"], scope["path"])
            if found is not None:
                hot, path_params = found
                scope["route"] = hot.route
                scope["path_params"] = path_params
                request = Request(scope, receive)
                key = await api_key(request)
                response = await hot.endpoint(request=request, key=key, **path_params)
                await response(scope, receive, send)
                return
        await self.app(scope, receive, send)

    def _match(self, method: str, path: str) -> tuple[_HotRoute, dict[str, Any]] | None:
        """What the router would find for these two routes; None for anything else."""
        for prefix in PREFIXES:
            if not path.startswith(prefix):
                continue
            rest = path[len(prefix) :]
            if method == "POST" and not rest:
                return self._create, {}
            if method == "GET" and rest.startswith("/") and len(rest) > 1 and "/" not in rest[1:]:
                return self._read, {"run_id": rest[1:]}
        return None
