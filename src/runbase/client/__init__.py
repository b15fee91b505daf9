"""runbase.client: the Python SDK for the Runbase runs API (runbase or runbase.net).

    >>> from runbase.client import Runbase, SeedanceInput
    >>> client = Runbase()  # RUNBASE_API_KEY, RUNBASE_BASE_URL (default http://127.0.0.1:8000)
    >>> run = client.run(
    ...     "bytedance/seedance-1.5-pro",
    ...     SeedanceInput('A lighthouse keeper says "storm tonight"', resolution="480p"),
    ... )
    >>> run.download("lighthouse.mp4")
    PosixPath('lighthouse.mp4')

`AsyncRunbase` does the same with `await`: it is the implementation, and `Runbase` is
generated from it (`scripts/unasync.py`), so the two faces cannot drift. Every error is a
`RunbaseError`, one class per error code; the tree is drawn in `runbase.client._errors`.
Everything public is listed in `__all__`; the modules behind it are private and may change.
"""

from __future__ import annotations

import inspect

from runbase.client._async_client import AsyncModels, AsyncRunbase, AsyncRuns
from runbase.client._client import Models, Runbase, Runs
from runbase.client._errors import (
    APIError,
    AuthenticationError,
    BadRequest,
    CancelTimedOut,
    Conflict,
    ConnectionFailed,
    EngineUnavailable,
    FileNotFound,
    IdempotencyKeyInUse,
    IdempotencyKeyReused,
    InsufficientBalance,
    InvalidApiKey,
    InvalidInput,
    InvalidJson,
    InvalidRequest,
    IpNotAllowed,
    MethodNotAllowed,
    MissingApiKey,
    MissingInput,
    MissingModel,
    ModelNotFound,
    NotFound,
    PermissionDenied,
    RangeNotSatisfiable,
    RateLimited,
    RequestTooLarge,
    RunAlreadyFinished,
    RunbaseError,
    RunFailed,
    RunNotFinished,
    RunNotFound,
    ServerError,
    SpendLimitExceeded,
    UsageExceeded,
    WaitTimeout,
)
from runbase.client._extensions import Account, EngineLicense, KeyInfo, ModelInfo
from runbase.client._inputs import (
    SEEDANCE_1_5_PRO,
    AspectRatio,
    Duration,
    Resolution,
    SeedanceInput,
    encode_image,
)
from runbase.client._models import (
    AsyncRun,
    ErrorDetail,
    ProgressCallback,
    Run,
    RunOutput,
    RunPage,
    RunStatus,
)

__all__ = [
    "SEEDANCE_1_5_PRO",
    "APIError",
    "Account",
    "AspectRatio",
    "AsyncModels",
    "AsyncRun",
    "AsyncRunbase",
    "AsyncRuns",
    "AuthenticationError",
    "BadRequest",
    "CancelTimedOut",
    "Conflict",
    "ConnectionFailed",
    "Duration",
    "EngineLicense",
    "EngineUnavailable",
    "ErrorDetail",
    "FileNotFound",
    "IdempotencyKeyInUse",
    "IdempotencyKeyReused",
    "InsufficientBalance",
    "InvalidApiKey",
    "InvalidInput",
    "InvalidJson",
    "InvalidRequest",
    "IpNotAllowed",
    "KeyInfo",
    "MethodNotAllowed",
    "MissingApiKey",
    "MissingInput",
    "MissingModel",
    "ModelInfo",
    "ModelNotFound",
    "Models",
    "NotFound",
    "PermissionDenied",
    "ProgressCallback",
    "RangeNotSatisfiable",
    "RateLimited",
    "RequestTooLarge",
    "Resolution",
    "Run",
    "RunAlreadyFinished",
    "RunFailed",
    "RunNotFinished",
    "RunNotFound",
    "RunOutput",
    "RunPage",
    "RunStatus",
    "Runbase",
    "RunbaseError",
    "Runs",
    "SeedanceInput",
    "ServerError",
    "SpendLimitExceeded",
    "UsageExceeded",
    "WaitTimeout",
    "encode_image",
]

# Show `runbase.client.Run` in tracebacks, reprs and docs, not the private module's name.
for _name in __all__:
    _member = globals()[_name]
    if isinstance(_member, type) or inspect.isfunction(_member):
        _member.__module__ = __name__
