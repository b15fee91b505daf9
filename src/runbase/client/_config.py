"""What both clients share: where the server is, the key, and the shape of a create body.

The SDK is a library of its own, installed beside the server or without it: the rule that
only `runbase.config` reads the environment is about the server. A client reads exactly
two variables, and only when its constructor is not given the value.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final
from urllib.parse import quote

from runbase import __version__
from runbase.client._inputs import SeedanceInput

DEFAULT_BASE_URL: Final = "http://127.0.0.1:8000"
RUNS_PATH: Final = "/api/v1/runs"
MODELS_PATH: Final = "/api/v1/models"
ACCOUNT_PATH: Final = "/api/v1/account"
USER_AGENT: Final = f"runbase-python/{__version__}"
DEFAULT_TIMEOUT_S: Final = 60.0
DEFAULT_MAX_RETRIES: Final = 5
DEFAULT_WAIT_S: Final = 1800.0

RunInput = SeedanceInput | Mapping[str, Any]


def resolve_api_key(api_key: str | None) -> str:
    """The key given, else RUNBASE_API_KEY, else "" (the server answers missing_api_key)."""
    if api_key is None:
        api_key = os.environ.get("RUNBASE_API_KEY", "")
    return api_key.strip()


def resolve_base_url(base_url: str | None) -> str:
    """The server's root URL: given, else RUNBASE_BASE_URL, else the local default."""
    if base_url is None:
        base_url = os.environ.get("RUNBASE_BASE_URL") or DEFAULT_BASE_URL
    return base_url.rstrip("/")


def auth_headers(api_key: str) -> dict[str, str]:
    """Sent with API requests only, never with downloads (see `download` in the clients)."""
    return {"Authorization": f"Bearer {api_key}"} if api_key else {}


def create_body(model: str, input: RunInput) -> dict[str, Any]:
    data = input.to_dict() if isinstance(input, SeedanceInput) else dict(input)
    return {"model": model, "input": data}


def run_path(run_id: str) -> str:
    # Quoted so that an id read from somewhere untrusted cannot reach another path.
    return f"{RUNS_PATH}/{quote(run_id, safe='')}"


def model_path(model_id: str) -> str:
    """`/api/v1/models/{owner}/{name}` for "owner/name", each part quoted."""
    owner, _, name = model_id.partition("/")
    return f"{MODELS_PATH}/{quote(owner, safe='')}/{quote(name, safe='')}"


def new_idempotency_key() -> str:
    """A fresh key for one create: random, so that two different creates never share one."""
    return f"runbase-python-{uuid.uuid4().hex}"


def list_params(
    *,
    limit: int | None,
    status: str | None,
    model: str | None,
    created_after: datetime | str | None,
    created_before: datetime | str | None,
    cursor: str | None,
) -> dict[str, str]:
    """The query of `GET /api/v1/runs`, without the parameters left to the server."""
    given = {
        "limit": None if limit is None else str(limit),
        "status": status,
        "model": model,
        "created_after": _timestamp(created_after),
        "created_before": _timestamp(created_before),
        "cursor": cursor,
    }
    return {name: value for name, value in given.items() if value is not None}


def _timestamp(value: datetime | str | None) -> str | None:
    return value.isoformat() if isinstance(value, datetime) else value
