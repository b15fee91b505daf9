"""Every error the SDK raises, one class per error code of the runs API.

Every class carries `code` (the contract's code, spelled exactly as the server sends it),
`status` (the HTTP status, or None when no HTTP answer stands behind the error) and
`message`. Catch a branch to handle a family: `AuthenticationError` covers both 401 codes.

    RunbaseError
    ├── APIError                      the server answered with the error envelope
    │   ├── BadRequest                400
    │   │   ├── InvalidJson           invalid_json
    │   │   ├── MissingModel          missing_model
    │   │   ├── ModelNotFound         model_not_found (also 404 from GET /models/...)
    │   │   ├── MissingInput          missing_input
    │   │   ├── InvalidInput          invalid_input
    │   │   └── InvalidRequest        invalid_request (a malformed header or parameter)
    │   ├── AuthenticationError       401
    │   │   ├── MissingApiKey         missing_api_key
    │   │   └── InvalidApiKey         invalid_api_key
    │   ├── InsufficientBalance       402 insufficient_balance
    │   ├── PermissionDenied          403
    │   │   ├── IpNotAllowed          ip_not_allowed
    │   │   └── SpendLimitExceeded    api_key_spend_limit_exceeded
    │   ├── NotFound                  404 not_found
    │   │   ├── RunNotFound           run_not_found
    │   │   └── FileNotFound          file_not_found (an output link that expired)
    │   ├── MethodNotAllowed          405 method_not_allowed
    │   ├── Conflict                  409
    │   │   ├── IdempotencyKeyReused  idempotency_key_reused (same key, another body)
    │   │   ├── IdempotencyKeyInUse   idempotency_key_in_use (retried automatically first)
    │   │   ├── RunAlreadyFinished    run_already_finished (a cancel came too late)
    │   │   └── CancelTimedOut        cancel_timeout (canceled as soon as the engine stops)
    │   ├── RequestTooLarge           413 request_too_large
    │   ├── RangeNotSatisfiable       416 range_not_satisfiable (a download's Range)
    │   ├── RateLimited               429 RATE_LIMITED (retried automatically first)
    │   ├── UsageExceeded             429 USAGE_EXCEEDED (never retried: a daily quota)
    │   └── ServerError               5xx internal_error (retried first where that is safe)
    │       └── EngineUnavailable     503 engine_unavailable (nothing on the server can make
    │                                 videos now; the run was not created, nothing charged)
    ├── ConnectionFailed              no answer: refused, reset or timed out
    ├── RunFailed                     the run ended `failed` or `canceled`; `code` is its error
    ├── WaitTimeout                   the run did not finish within the time given to wait
    └── RunNotFinished                output asked of a run that has none yet

Every code the runs API answers has its class here; a test checks this table against the
server's (`runbase.errors`), so that a new server code cannot go without one.
Codes the SDK does not know (a newer or compatible server) still raise the class of their
HTTP status, with the server's `code` kept as is.
"""

from __future__ import annotations

import json
from typing import Any

import httpx

from runbase.client._models import AsyncRun, Run, RunStatus


class RunbaseError(Exception):
    """Something went wrong talking to a Runbase server."""

    code: str = "runbase_error"
    status: int | None = None

    def __init__(self, message: str, *, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class APIError(RunbaseError):
    """The server refused the request with `{"error": {"message", "code"}}`."""

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        response: httpx.Response | None = None,
    ) -> None:
        super().__init__(message, code=code, status=status)
        self.response = response


class BadRequest(APIError):
    """The request body is wrong (400)."""

    code = "bad_request"
    status = 400


class InvalidJson(BadRequest):
    """The request body is not valid JSON."""

    code = "invalid_json"


class MissingModel(BadRequest):
    """The body has no `model` string."""

    code = "missing_model"


class ModelNotFound(BadRequest):
    """No model with this ID is available on the server."""

    code = "model_not_found"


class MissingInput(BadRequest):
    """The body has no `input` object."""

    code = "missing_input"


class InvalidInput(BadRequest):
    """The `input` does not match the model's schema; the message names the field."""

    code = "invalid_input"


class InvalidRequest(BadRequest):
    """A header or query parameter is malformed (a runbase extension)."""

    code = "invalid_request"


class AuthenticationError(APIError):
    """The API key is missing or not accepted (401)."""

    code = "unauthorized"
    status = 401


class MissingApiKey(AuthenticationError):
    """No API key was sent: pass `api_key=` or set RUNBASE_API_KEY."""

    code = "missing_api_key"


class InvalidApiKey(AuthenticationError):
    """The API key is unknown, disabled or expired."""

    code = "invalid_api_key"


class InsufficientBalance(APIError):
    """The account's balance is too low for this run (402); top it up."""

    code = "insufficient_balance"
    status = 402


class PermissionDenied(APIError):
    """The key may not do this (403)."""

    code = "forbidden"
    status = 403


class IpNotAllowed(PermissionDenied):
    """This address is not on the key's IP allowlist."""

    code = "ip_not_allowed"


class SpendLimitExceeded(PermissionDenied):
    """The run would take the key past its lifetime spend limit."""

    code = "api_key_spend_limit_exceeded"


class NotFound(APIError):
    """No such endpoint or file (404)."""

    code = "not_found"
    status = 404


class RunNotFound(NotFound):
    """No run with this ID exists for the key's account."""

    code = "run_not_found"


class FileNotFound(NotFound):
    """No such output file, or its signed link has expired: read the run again for a new one."""

    code = "file_not_found"


class MethodNotAllowed(APIError):
    """The endpoint does not take this HTTP method (405)."""

    code = "method_not_allowed"
    status = 405


class Conflict(APIError):
    """The request conflicts with the state of a run or of an Idempotency-Key (409)."""

    code = "conflict"
    status = 409


class IdempotencyKeyReused(Conflict):
    """The Idempotency-Key was used before with a different body: use a new key."""

    code = "idempotency_key_reused"


class IdempotencyKeyInUse(Conflict):
    """A create with the same Idempotency-Key is still being handled; retried first."""

    code = "idempotency_key_in_use"


class RunAlreadyFinished(Conflict):
    """The run had already finished, so it cannot be canceled."""

    code = "run_already_finished"


class CancelTimedOut(Conflict):
    """The engine did not stop in time; the run is canceled (and refunded) once it does."""

    code = "cancel_timeout"


class RequestTooLarge(APIError):
    """The request body is larger than any valid create (413)."""

    code = "request_too_large"
    status = 413


class RateLimited(APIError):
    """Too many requests for this key; raised only once the automatic retries ran out."""

    code = "RATE_LIMITED"
    status = 429

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        response: httpx.Response | None = None,
    ) -> None:
        super().__init__(message, code=code, status=status, response=response)
        header = response.headers.get("retry-after") if response is not None else None
        self.retry_after: float | None = _parse_seconds(header)


class UsageExceeded(APIError):
    """The key's run quota is used up; retrying soon cannot help."""

    code = "USAGE_EXCEEDED"
    status = 429


class ServerError(APIError):
    """The server failed (5xx)."""

    code = "internal_error"
    status = 500


class EngineUnavailable(ServerError):
    """Nothing the server is configured with can make videos now; nothing was created or
    charged (503)."""

    code = "engine_unavailable"
    status = 503


class ConnectionFailed(RunbaseError):
    """No answer from the server: the connection was refused, reset or timed out."""

    code = "connection_failed"


class RunFailed(RunbaseError):
    """The run ended `failed` (or `canceled`); `run.error` says why; its cost was refunded."""

    code = "generation_failed"

    def __init__(self, run: Run | AsyncRun) -> None:
        error = run.error
        message = error.message if error else "the run failed"
        super().__init__(message, code=error.code if error else None)
        self.run = run


class WaitTimeout(RunbaseError):
    """The run was still unfinished when the wait's timeout ran out; `run` is its last state."""

    code = "wait_timeout"

    def __init__(self, run: Run | AsyncRun, timeout: float) -> None:
        super().__init__(f"run {run.id} is still {run.status} after {timeout:g} s")
        self.run = run


class RunNotFinished(RunbaseError):
    """The run has no output to download (yet)."""

    code = "run_not_finished"


def require_output_url(run: Run | AsyncRun) -> str:
    """The run's video URL; `RunFailed` for a failed or canceled run, `RunNotFinished` for a
    running one."""
    if run.status in (RunStatus.FAILED, RunStatus.CANCELED):
        raise RunFailed(run)
    url = run.output_url
    if url is None:
        raise RunNotFinished(f"run {run.id} is {run.status}; it has no output to download")
    return url


class RangeNotSatisfiable(APIError):
    """No part of the byte range asked of an output file is in it (416)."""

    code = "range_not_satisfiable"
    status = 416


_BY_CODE: dict[str, type[APIError]] = {
    cls.code: cls
    for cls in (
        InvalidJson,
        MissingModel,
        ModelNotFound,
        MissingInput,
        InvalidInput,
        InvalidRequest,
        MissingApiKey,
        InvalidApiKey,
        InsufficientBalance,
        IpNotAllowed,
        SpendLimitExceeded,
        NotFound,
        RunNotFound,
        FileNotFound,
        MethodNotAllowed,
        IdempotencyKeyReused,
        IdempotencyKeyInUse,
        RunAlreadyFinished,
        CancelTimedOut,
        RequestTooLarge,
        RangeNotSatisfiable,
        RateLimited,
        UsageExceeded,
        ServerError,
        EngineUnavailable,
    )
}
_BY_STATUS: dict[int, type[APIError]] = {
    400: BadRequest,
    401: AuthenticationError,
    402: InsufficientBalance,
    403: PermissionDenied,
    404: NotFound,
    405: MethodNotAllowed,
    409: Conflict,
    413: RequestTooLarge,
    416: RangeNotSatisfiable,
    429: RateLimited,
}


def error_from_response(response: httpx.Response) -> APIError:
    """The exception for an error answer; `response` must already be read.

    The class comes from the envelope's `code`; unknown codes fall back to their status's
    class, so `except PermissionDenied` keeps working against a newer server.
    """
    code, message = _read_envelope(response)
    status = response.status_code
    cls = _BY_CODE.get(code or "")
    if cls is None:
        cls = ServerError if status >= 500 else _BY_STATUS.get(status, APIError)
    return cls(
        message or f"HTTP {status} from {response.request.url}",
        code=code or f"http_{status}",
        status=status,
        response=response,
    )


def _read_envelope(response: httpx.Response) -> tuple[str | None, str | None]:
    try:
        body: Any = json.loads(response.content)
    except ValueError:
        return None, None  # a proxy's HTML page, say: the status alone must do
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None, None
    code, message = error.get("code"), error.get("message")
    return (
        code if isinstance(code, str) else None,
        message if isinstance(message, str) else None,
    )


def _parse_seconds(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date; the SDK falls back to its own backoff
