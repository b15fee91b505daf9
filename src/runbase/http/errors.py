"""The one place that turns errors into the contract's envelope:

    {"error": {"message": "Human-readable description", "code": "error_code"}}

plus, for the admin API's validation errors only, `"fields": {"name": "what is wrong"}`.

Handlers are registered for base classes; Starlette looks them up along the MRO, so every
`RunbaseError` subclass is covered by one handler. Anything unexpected becomes a 500
`internal_error` without a traceback in the body (it goes to the log).

Errors raised before any route's handler runs (no such route, a method the route does not
take) are answered in the envelope of the surface the path belongs to: the compatible
surfaces register theirs (`install_error_handlers(app, surfaces=...)`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.routing import Match

from runbase.errors import (
    InvalidFields,
    InvalidRequest,
    MethodNotAllowed,
    RateLimited,
    RouteNotFound,
    RunbaseError,
    ServerError,
)
from runbase.http.ratelimit import rate_limit_headers

logger = logging.getLogger(__name__)

ErrorRenderer = Callable[[Request, RunbaseError], Response]
"""A surface's answer to an error: its envelope, status and headers."""


def error_response(request: Request, error: RunbaseError) -> JSONResponse:
    headers = rate_limit_headers(request)
    headers.update(error.headers)
    if isinstance(error, RateLimited):
        headers["Retry-After"] = str(error.retry_after)
    body: dict[str, Any] = {"message": error.message, "code": error.code}
    if isinstance(error, InvalidFields):  # the admin API's validation errors name each field
        body["fields"] = error.fields
    return JSONResponse(
        {"error": body},
        status_code=error.http_status,
        headers=headers,
    )


def as_runbase_error(request: Request, exc: Exception) -> RunbaseError:
    """What an endpoint's error answers as: itself for a `RunbaseError`, a 500
    `ServerError` for anything else; server errors are logged here, for every surface."""
    if isinstance(exc, RunbaseError):
        if isinstance(exc, ServerError):
            logger.error("server error on %s: %s", request.url.path, exc.message)
        return exc
    logger.error("unexpected error on %s %s", request.method, request.url.path, exc_info=exc)
    return ServerError()


def error_response_for(request: Request, exc: Exception) -> JSONResponse:
    """The Runbase envelope for an error raised by an endpoint."""
    return error_response(request, as_runbase_error(request, exc))


async def _runbase_error(request: Request, exc: Exception) -> JSONResponse:
    return error_response_for(request, exc)


def _routing_error(request: Request, exc: HTTPException) -> RunbaseError:
    """What the router's own 404 and 405 (and Starlette's other refusals) answer as."""
    if exc.status_code == 404:
        return RouteNotFound()
    if exc.status_code == 405:
        return MethodNotAllowed(_allowed_methods(request))
    error = RunbaseError(str(exc.detail))
    error.http_status = exc.status_code  # type: ignore[misc]
    return error


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route of this path takes (Starlette's own 405 would name only the
    first route that matched the path), found by asking the routes as the router does."""
    return [
        method
        for method in _METHODS
        if any(
            route.matches({**request.scope, "method": method})[0] is Match.FULL
            for route in request.app.router.routes
        )
    ]


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    # In our words: pydantic's messages name its internals (and link to its docs).
    assert isinstance(exc, RequestValidationError)
    places = sorted({" ".join(str(part) for part in error["loc"]) for error in exc.errors()})
    return error_response(
        request, InvalidRequest(f"the request is malformed: {', '.join(places)} is not valid")
    )


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    return error_response_for(request, exc)


def install_error_handlers(
    app: FastAPI, *, surfaces: Mapping[str, ErrorRenderer] | None = None
) -> None:
    """The handlers; `surfaces` maps a path prefix to its surface's envelope, for errors
    that happen before a route of that surface runs (404, 405)."""
    renderers = dict(surfaces or {})

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        error = _routing_error(request, exc)
        for prefix, render in renderers.items():
            if request.url.path.startswith(prefix):
                return render(request, error)
        return error_response(request, error)

    app.add_exception_handler(RunbaseError, _runbase_error)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
