"""The error envelope each surface answers in, and a check that an answer is in its own.

Runbase (/api/v1, /v1/runs, /files, ...)  {"error": {"message", "code"}}
OpenAI Videos (/v1/videos)                {"error": {"message", "type", "param", "code"}}
ModelArk (/api/v3)                        {"error": {"code", "message", "param", "type"}}
"""

from __future__ import annotations

import re
from typing import Any

import httpx

OPENAI_FIELDS = {"message", "type", "param", "code"}
ARK_FIELDS = {"code", "message", "param", "type"}
# What no message may show: a file path, a traceback, a library's own wording.
_LEAKS = re.compile(
    r"Traceback|File \"|\.py\b|site-packages|[/](?:home|usr|tmp|work)/|pydantic|errors\.pydantic|"
    r"Expecting value|Extra data|sys\.set_int_max_str_digits|RecursionError|surrogates not allowed"
)


def surface(path: str) -> str:
    if path.startswith("/v1/videos"):
        return "openai"
    if path.startswith("/api/v3/"):
        return "ark"
    return "runbase"


def error_of(path: str, response: httpx.Response) -> dict[str, Any]:
    """The error object of an error answer, after checking it is in `path`'s envelope
    and that its message leaks nothing."""
    body = response.json()
    assert isinstance(body, dict) and set(body) == {"error"}, response.text
    error: dict[str, Any] = body["error"]
    kind = surface(path)
    if kind == "openai":
        assert set(error) == OPENAI_FIELDS, error
        assert isinstance(error["type"], str) and error["type"]
    elif kind == "ark":
        assert set(error) == ARK_FIELDS, error
        assert isinstance(error["type"], str) and error["type"]
    else:
        assert set(error) == {"message", "code"}, error
    assert isinstance(error["message"], str) and error["message"], error
    assert isinstance(error["code"], str) and error["code"], error
    assert not _LEAKS.search(error["message"]), error["message"]
    return error


def refused(path: str, response: httpx.Response, status: int = 400) -> dict[str, Any]:
    """A refusal with `status` in the surface's envelope; its error object."""
    assert response.status_code == status, (path, response.status_code, response.text)
    return error_of(path, response)
