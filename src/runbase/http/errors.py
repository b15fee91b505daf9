"""The one place that turns errors into the contract's envelope:

    {"error": {"message": "Human-readable description", "code": "error_code"}}

plus, for the admin API's validation errors only, `"fields": {"name": "what is wrong"}`.

Handlers are registered for base classes; Starlette looks them up along the MRO, so every
`RunbaseError` subclass is covered by one handler. Anything unexpected becomes a 500
`internal_error` without a traceback in the body (it goes to the log).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from runbase.errors import (
    InvalidFields,
    InvalidInput,
    MethodNotAllowed,
    RateLimited,
    RouteNotFound,
    RunbaseError,
    ServerError,
)
from runbase.http.ratelimit import rate_limit_headers

logger = logging.getLogger(__name__)


def error_response(request: Request, error: RunbaseError) -> JSONResponse:
    headers = rate_limit_headers(request)
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


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    error: RunbaseError
    if exc.status_code == 404:
        error = RouteNotFound()
    elif exc.status_code == 405:
        error = MethodNotAllowed()
    else:
        error = RunbaseError(str(exc.detail))
        error.http_status = exc.status_code  # type: ignore[misc]
    return error_response(request, error)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    return error_response(request, InvalidInput(f"the request is malformed: {exc}"))


async def _unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    return error_response_for(request, exc)


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(RunbaseError, _runbase_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected_error)
