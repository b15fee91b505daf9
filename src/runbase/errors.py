"""Every error runbase raises on purpose.

Each class carries the contract's `code` and the HTTP status it is answered with; its
docstring is the default message. Only `runbase.http.errors` turns them into the
`{"error": {"message", "code"}}` envelope.

    RunbaseError
    ├── ApiError                      the caller's request is refused (an HTTP answer)
    │   ├── InvalidJson               400 invalid_json
    │   ├── MissingModel              400 missing_model
    │   ├── ModelNotFound             400 model_not_found
    │   ├── MissingInput              400 missing_input
    │   ├── InvalidInput              400 invalid_input
    │   ├── MissingApiKey             401 missing_api_key
    │   ├── InvalidApiKey             401 invalid_api_key
    │   ├── InsufficientBalance       402 insufficient_balance
    │   ├── SpendLimitExceeded        403 api_key_spend_limit_exceeded
    │   ├── IpNotAllowed              403 ip_not_allowed
    │   ├── RunNotFound               404 run_not_found
    │   ├── RouteNotFound             404 not_found
    │   ├── MethodNotAllowed          405 method_not_allowed
    │   ├── RateLimited               429 RATE_LIMITED
    │   ├── UsageExceeded             429 USAGE_EXCEEDED
    │   │   extensions (README "Beyond the contract"):
    │   ├── InvalidRequest            400 invalid_request (a malformed header or parameter)
    │   │   └── BadParameter              ... naming the parameter (`param`)
    │   ├── RangeNotSatisfiable       416 range_not_satisfiable (files: no part of a Range)
    │   ├── UnknownModel              404 model_not_found (GET /models/{owner}/{name})
    │   ├── IdempotencyKeyReused      409 idempotency_key_reused
    │   ├── IdempotencyKeyInUse       409 idempotency_key_in_use
    │   ├── RunAlreadyFinished        409 run_already_finished (cancel came too late)
    │   ├── CancelTimedOut            409 cancel_timeout (the engine did not stop in time)
    │   ├── InvalidCallbackSignature  403 invalid_signature (a provider callback not signed
    │   │                             by runbase)
    │   ├── NoEngineAvailable         503 engine_unavailable (nothing of RUNBASE_ENGINES can
    │   │                             take runs; refused before any charge)
    │   │   the admin API (README "Administration"):
    │   ├── InvalidFields             400 invalid_request, with `fields` {name: problem}
    │   └── AdminError                refusals of the admin API alone
    │       ├── AccountNotFound       404 account_not_found
    │       ├── KeyNotFound           404 key_not_found
    │       ├── AccountExists         409 account_exists
    │       ├── MissingAdminToken     401 missing_admin_token
    │       ├── InvalidAdminToken     401 invalid_admin_token
    │       └── CrossSiteRequest      403 cross_site_request (a change from another site)
    ├── RunFailure                    why a run ended `failed`; becomes the run's `error`
    │   ├── InvalidImage              invalid_image      (the user's image; a user fault)
    │   ├── GenerationFailed          generation_failed  (the engine or model failed)
    │   ├── RunTimedOut               timeout            (over the maximum processing time)
    │   ├── RunCanceled               canceled
    │   ├── UpstreamError             upstream_error     (a provider we forward to failed)
    │   └── WorkerLost                worker_lost        (infrastructure: the worker vanished)
    └── ServerError                   500 internal_error (misconfiguration, storage faults)
        └── EngineUnavailable         an engine could not start (missing weights, no GPU)
"""

from __future__ import annotations

from typing import ClassVar


class RunbaseError(Exception):
    """Something went wrong in runbase."""

    code: ClassVar[str] = "internal_error"
    http_status: ClassVar[int] = 500

    def __init__(self, message: str | None = None) -> None:
        self.message = message or (self.__doc__ or self.code).strip()
        self.headers: dict[str, str] = {}
        """Response headers the answer must carry (`Allow` of a 405, ...)."""
        super().__init__(self.message)


class ApiError(RunbaseError):
    """The request was refused."""

    http_status = 400


class InvalidJson(ApiError):
    """The request body is not valid JSON."""

    code = "invalid_json"


class RequestTooLarge(ApiError):
    """The request body is larger than any valid create (two images as data URIs at most)."""

    code = "request_too_large"
    http_status = 413


class MissingModel(ApiError):
    """The request body needs a `model` string, such as "bytedance/seedance-1.5-pro"."""

    code = "missing_model"


class ModelNotFound(ApiError):
    """No model with this ID is available."""

    code = "model_not_found"


class MissingInput(ApiError):
    """The request body needs an `input` object."""

    code = "missing_input"


class InvalidInput(ApiError):
    """The `input` does not match the model's schema."""

    code = "invalid_input"


class MissingApiKey(ApiError):
    """Send your API key as `Authorization: Bearer sk-...`."""

    code = "missing_api_key"
    http_status = 401


class InvalidApiKey(ApiError):
    """The API key is invalid, disabled or expired."""

    code = "invalid_api_key"
    http_status = 401


class InsufficientBalance(ApiError):
    """The account's balance is too low for this run."""

    code = "insufficient_balance"
    http_status = 402


class SpendLimitExceeded(ApiError):
    """This run would take the API key past its spend limit."""

    code = "api_key_spend_limit_exceeded"
    http_status = 403


class IpNotAllowed(ApiError):
    """Requests from this IP address are not allowed for this API key."""

    code = "ip_not_allowed"
    http_status = 403


class RunNotFound(ApiError):
    """No run with this ID exists for your account."""

    code = "run_not_found"
    http_status = 404


class RouteNotFound(ApiError):
    """No such endpoint."""

    code = "not_found"
    http_status = 404


class MethodNotAllowed(ApiError):
    """This endpoint does not accept this HTTP method."""

    code = "method_not_allowed"
    http_status = 405

    def __init__(self, allowed: list[str]) -> None:
        super().__init__(f"this endpoint accepts {', '.join(allowed)}")
        self.headers["Allow"] = ", ".join(allowed)


class RateLimited(ApiError):
    """Rate limit exceeded"""

    code = "RATE_LIMITED"
    http_status = 429

    def __init__(self, message: str | None = None, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class UsageExceeded(ApiError):
    """This API key has used up its daily run quota."""

    code = "USAGE_EXCEEDED"
    http_status = 429


class InvalidRequest(ApiError):
    """A header or query parameter is malformed."""

    code = "invalid_request"


class BadParameter(InvalidRequest):
    """A header, query parameter or form field that cannot be read; `param` names it."""

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


class RangeNotSatisfiable(ApiError):
    """No part of the requested byte range is in the file."""

    code = "range_not_satisfiable"
    http_status = 416

    def __init__(self, size: int) -> None:
        super().__init__(f"the file has {size} bytes, and no part of the Range is within them")
        self.headers["Content-Range"] = f"bytes */{size}"


class UnknownModel(ApiError):
    """No model with this ID is available."""

    code = "model_not_found"
    http_status = 404


class IdempotencyKeyReused(ApiError):
    """This Idempotency-Key was already used with a different request body."""

    code = "idempotency_key_reused"
    http_status = 409


class IdempotencyKeyInUse(ApiError):
    """A request with this Idempotency-Key is still being processed; retry shortly."""

    code = "idempotency_key_in_use"
    http_status = 409


class RunAlreadyFinished(ApiError):
    """The run had already finished, so it cannot be canceled."""

    code = "run_already_finished"
    http_status = 409


class CancelTimedOut(ApiError):
    """The run's engine did not stop in time; the cancel request stays in place."""

    code = "cancel_timeout"
    http_status = 409


class InvalidCallbackSignature(ApiError):
    """This callback URL is not one that runbase signed."""

    code = "invalid_signature"
    http_status = 403


class NoEngineAvailable(ApiError):
    """No engine can take runs now; nothing was charged. Try again later."""

    code = "engine_unavailable"
    http_status = 503


class RunFailure(RunbaseError):
    """The run failed."""

    code = "generation_failed"


class InvalidImage(RunFailure):
    """An input image could not be used."""

    code = "invalid_image"


class GenerationFailed(RunFailure):
    """The engine failed to generate the video."""

    code = "generation_failed"


class RunTimedOut(RunFailure):
    """The run did not finish within the maximum processing time."""

    code = "timeout"


class RunCanceled(RunFailure):
    """The run was canceled."""

    code = "canceled"


class UpstreamError(RunFailure):
    """The upstream provider failed to generate the video."""

    code = "upstream_error"


class WorkerLost(RunFailure):
    """The worker processing this run stopped responding."""

    code = "worker_lost"


class ServerError(RunbaseError):
    """An unexpected server error occurred."""


class EngineUnavailable(ServerError):
    """The engine could not be started."""


# ---- the admin API (README "Administration"); the same tree, answered in the same envelope


class AdminError(ApiError):
    """A refusal of the admin API only: never answered on the runs API (so the SDK, a
    client of the runs API, has no class for it)."""


class InvalidFields(InvalidRequest):
    """The request's fields are not valid."""

    def __init__(self, fields: dict[str, str]) -> None:
        super().__init__("; ".join(f"{name}: {problem}" for name, problem in fields.items()))
        self.fields = fields
        """Each invalid field (as the API spells it) and what is wrong with it."""


class AccountNotFound(AdminError):
    """No such account."""

    code = "account_not_found"
    http_status = 404


class AccountExists(AdminError):
    """An account with this name already exists."""

    code = "account_exists"
    http_status = 409


class KeyNotFound(AdminError):
    """No such API key."""

    code = "key_not_found"
    http_status = 404


class MissingAdminToken(AdminError):
    """Send the admin token as `Authorization: Bearer <token>`."""

    code = "missing_admin_token"
    http_status = 401


class InvalidAdminToken(AdminError):
    """The admin token is not valid (API keys are never accepted here)."""

    code = "invalid_admin_token"
    http_status = 401


class CrossSiteRequest(AdminError):
    """Admin changes are only accepted from this server's own pages (Origin)."""

    code = "cross_site_request"
    http_status = 403
