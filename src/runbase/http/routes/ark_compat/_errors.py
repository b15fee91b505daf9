"""ModelArk's error envelope for the `/api/v3` routes, and only for them:

    {"error": {"code": "InvalidParameter", "message": "... Request id: <id>",
               "param": "ratio", "type": "BadRequest"}}

`ArkRoute` (`compat_edge.enveloped_route`) wraps each handler of the router, so a
`RunbaseError` raised anywhere below it (auth, rate limit, checks, the charge) is answered
here, before the app's Runbase envelope handler could see it. Runbase codes become
ModelArk's:

    400 InvalidParameter, MissingParameter     BadRequest
    401 AuthenticationError                    Unauthorized
    403 AccessDenied (allowlist), AccountOverdueError (balance), SetLimitExceeded (key
        spend limit)                           Forbidden
    404 ResourceNotFound (task), InvalidEndpointOrModel.NotFound (model)   NotFound
    409 InvalidAction.TaskStatus (delete in the wrong status), Conflict     Conflict
    429 RateLimitExceeded (with Retry-After), QuotaExceeded (daily runs)   TooManyRequests
    500 InternalServiceError                   InternalServerError

The SDK retries 409, 429 and 5xx by itself; `x-should-retry: false` stops it where a retry
cannot help. The SDK's `request_id` is the `X-Client-Request-Id` it sent, which is echoed.
"""

from __future__ import annotations

import re
from typing import Final

from fastapi import Request
from fastapi.responses import JSONResponse

from runbase.errors import (
    ApiError,
    IdempotencyKeyInUse,
    InsufficientBalance,
    InvalidApiKey,
    IpNotAllowed,
    MissingApiKey,
    ModelNotFound,
    RateLimited,
    RunbaseError,
    RunNotFound,
    ServerError,
    SpendLimitExceeded,
    UsageExceeded,
)
from runbase.http.ratelimit import rate_limit_headers
from runbase.http.routes.compat_edge import enveloped_route
from runbase.logs import REQUEST_ID

CLIENT_REQUEST_ID: Final = "x-client-request-id"
_SAFE_ID: Final = re.compile(r"[A-Za-z0-9._:/+=@-]{1,128}")
_TYPES: Final = {
    400: "BadRequest",
    401: "Unauthorized",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    413: "RequestEntityTooLarge",
    429: "TooManyRequests",
}
# Runbase errors -> (HTTP status, ModelArk code).
_CODES: Final[tuple[tuple[type[RunbaseError], int, str], ...]] = (
    (MissingApiKey, 401, "AuthenticationError"),
    (InvalidApiKey, 401, "AuthenticationError"),
    (IpNotAllowed, 403, "AccessDenied"),
    (InsufficientBalance, 403, "AccountOverdueError"),
    (SpendLimitExceeded, 403, "SetLimitExceeded"),
    (RunNotFound, 404, "ResourceNotFound"),
    (ModelNotFound, 404, "InvalidEndpointOrModel.NotFound"),
    (RateLimited, 429, "RateLimitExceeded"),
    (UsageExceeded, 429, "QuotaExceeded"),
)
# Runbase input fields (named in the core's messages) -> the ModelArk parameter.
_PARAMS: Final = {
    "prompt": "content.text",
    "image_urls": "content.image_url.url",
    "resolution": "resolution",
    "aspect_ratio": "ratio",
    "duration": "duration",
    "generate_audio": "generate_audio",
    "seed": "seed",
    "camera_fixed": "camera_fixed",
}
_INPUT_FIELD: Final = re.compile(r"^input\.(\w+)")


class ArkRequestError(ApiError):
    """A bad parameter of a ModelArk request (400 InvalidParameter)."""

    code = "InvalidParameter"

    def __init__(
        self, message: str, *, param: str | None, code: str | None = None, status: int = 400
    ) -> None:
        super().__init__(message)
        self.param = param
        self.http_status = status  # type: ignore[misc]
        if code is not None:
            self.code = code  # type: ignore[misc]


class TaskStatusConflict(ApiError):
    """The task's status does not allow this operation."""

    code = "InvalidAction.TaskStatus"
    http_status = 409


def ark_code(error: RunbaseError) -> tuple[int, str]:
    """The HTTP status and ModelArk code of a Runbase error."""
    if isinstance(error, (ArkRequestError, TaskStatusConflict)):
        return error.http_status, error.code
    for kind, status, code in _CODES:
        if isinstance(error, kind):
            return status, code
    if isinstance(error, ServerError) or error.http_status >= 500:
        return 500, "InternalServiceError"
    if error.http_status == 400:
        return 400, "InvalidParameter"
    if error.http_status == 409:
        return 409, "Conflict"
    return error.http_status, error.code


def ark_headers(request: Request) -> dict[str, str]:
    """The rate-limit headers, and the SDK's own request id echoed back."""
    headers = rate_limit_headers(request)
    client_id = request.headers.get(CLIENT_REQUEST_ID)
    if client_id is not None and _SAFE_ID.fullmatch(client_id):
        headers["X-Client-Request-Id"] = client_id
    return headers


def ark_error_response(request: Request, error: RunbaseError) -> JSONResponse:
    """`error` in ModelArk's envelope; the message ends with the request id, as ModelArk's."""
    status, code = ark_code(error)
    headers = ark_headers(request)
    headers.update(error.headers)
    param = getattr(error, "param", None)
    if param is None:
        field = _INPUT_FIELD.match(error.message)
        param = _PARAMS.get(field.group(1)) if field else None
    if isinstance(error, RateLimited):
        headers["Retry-After"] = str(error.retry_after)
    if status in (409, 429) and not isinstance(error, (RateLimited, IdempotencyKeyInUse)):
        headers["x-should-retry"] = "false"  # waiting does not change the answer
    message = error.message.rstrip(".") + "."
    request_id = REQUEST_ID.get()
    if request_id:
        message += f" Request id: {request_id}"
    body = {
        "error": {
            "code": code,
            "message": message,
            "param": param or "",
            "type": _TYPES.get(status, "InternalServerError"),
        }
    }
    return JSONResponse(body, status_code=status, headers=headers)


ArkRoute = enveloped_route(ark_error_response)
"""A route whose errors are answered in ModelArk's envelope."""
