"""OpenAI's error envelope for the `/v1/videos` routes, and only for them:

    {"error": {"message": "...", "type": "invalid_request_error", "param": "size", "code": "..."}}

`OpenAIRoute` (`compat_edge.enveloped_route`) wraps each handler of the router, so a
`RunbaseError` raised anywhere below it (auth, rate limit, validation, the charge) is
answered here, before the app's Runbase envelope handler could see it. Statuses follow
what the `openai` SDK expects:

    400 invalid_request_error   bad parameters (`param` names the field when known;
                                code invalid_value for an unreadable one)
    401 invalid_request_error   missing or invalid key (SDK: AuthenticationError)
    404 invalid_request_error   no such video for this account (NotFoundError)
    409 invalid_request_error   the video is in the wrong state (ConflictError)
    429 requests                rate limit, with Retry-After (the SDK waits and retries)
    429 insufficient_quota      balance, spend limit or daily quota (x-should-retry: false)
    500 server_error

The SDK retries 409 and 429 by itself; `x-should-retry: false` stops it where retrying
cannot help.
"""

from __future__ import annotations

import re

from fastapi import Request
from fastapi.responses import JSONResponse

from runbase.errors import (
    ApiError,
    InsufficientBalance,
    InvalidImage,
    InvalidRequest,
    RateLimited,
    RunbaseError,
    ServerError,
    SpendLimitExceeded,
    UsageExceeded,
)
from runbase.http.ratelimit import rate_limit_headers
from runbase.http.routes.compat_edge import enveloped_route

_QUOTA_ERRORS = (InsufficientBalance, SpendLimitExceeded, UsageExceeded)
# Runbase input fields -> the OpenAI parameter they come from.
_PARAMS = {
    "prompt": "prompt",
    "duration": "seconds",
    "resolution": "size",
    "aspect_ratio": "size",
    "image_urls": "input_reference",
    "generate_audio": "generate_audio",
    "seed": "seed",
    "camera_fixed": "camera_fixed",
}
_INPUT_FIELD = re.compile(r"^input\.(\w+)")


class VideoRequestError(ApiError):
    """A bad parameter of a videos request (400)."""

    code = "invalid_value"

    def __init__(self, message: str, *, param: str | None, code: str | None = None) -> None:
        super().__init__(message)
        self.param = param
        if code is not None:
            self.code = code  # type: ignore[misc]


class VideoNotFound(ApiError):
    """No video with this id exists for your account."""

    code = "video_not_found"
    http_status = 404


class VideoNotReady(ApiError):
    """The video is not completed, so it has no content."""

    code = "video_not_ready"
    http_status = 409


class RequestTooLarge(ApiError):
    """The request body is too large."""

    code = "request_too_large"
    http_status = 413


class VideoConflict(ApiError):
    """The video cannot be changed in its current state."""

    code = "conflict"
    http_status = 409


def image_error(error: InvalidImage) -> VideoRequestError:
    """An upload refused by the image rules, worded for `input_reference`."""
    message = error.message.replace("image_urls[0]", "input_reference", 1)
    return VideoRequestError(message, param="input_reference", code="invalid_image")


def openai_error_response(request: Request, error: RunbaseError) -> JSONResponse:
    """`error` in OpenAI's envelope, with the rate-limit headers the Runbase routes send."""
    headers = rate_limit_headers(request)
    headers.update(error.headers)
    status, kind, code = error.http_status, "invalid_request_error", error.code
    param = getattr(error, "param", None)
    if param is None:
        field = _INPUT_FIELD.match(error.message)
        param = _PARAMS.get(field.group(1)) if field else None
    if isinstance(error, RateLimited):
        kind, code = "requests", "rate_limit_exceeded"
        headers["Retry-After"] = str(error.retry_after)
    elif isinstance(error, _QUOTA_ERRORS):
        status, kind, code = 429, "insufficient_quota", "insufficient_quota"
        headers["x-should-retry"] = "false"
    elif isinstance(error, InvalidRequest):  # a header or parameter `parsing` refused
        code = "invalid_value"
    elif isinstance(error, ServerError) or status >= 500:
        kind = "server_error"
    elif status == 409 and code != "idempotency_key_in_use":
        headers["x-should-retry"] = "false"
    body = {"error": {"message": error.message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


OpenAIRoute = enveloped_route(openai_error_response)
"""A route whose errors are answered in OpenAI's envelope."""
