"""What both clients share: where the server is, the key, and the shape of a create body.

The SDK is a library of its own, installed beside the server or without it: the rule that
only `runbase.config` reads the environment is about the server. A client reads exactly
two variables, and only when its constructor is not given the value.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import quote

from runbase import __version__
from runbase.client._inputs import SeedanceInput

DEFAULT_BASE_URL: Final = "http://127.0.0.1:8000"
RUNS_PATH: Final = "/api/v1/runs"
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
