"""The OpenAPI document's error answers: every status an operation can answer, each with
its surface's envelope, so that a client (or a fuzzer) can hold the server to it.

FastAPI documents only what routes declare, and a 422 that runbase never sends (it reads
requests itself, `runbase.parsing`). `document_errors` rewrites the document once, when it
is first asked for: the 422s go, and each operation gets the error statuses of its kind
(below) with the envelope of its surface (`http/errors.py`, `openai_videos/_errors.py`,
`ark_compat/_errors.py`). HEAD operations declare no bodies.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final

from fastapi import FastAPI

_STRING: Final = {"type": "string"}
_NULLABLE: Final = {"type": ["string", "null"]}


def _envelope_schema(fields: dict[str, Any]) -> dict[str, Any]:
    """`{"error": {...fields}}`, nothing else."""
    error = {"type": "object", "required": list(fields), "additionalProperties": False}
    error["properties"] = fields
    return {
        "type": "object",
        "required": ["error"],
        "additionalProperties": False,
        "properties": {"error": error},
    }


ENVELOPES: Final = {
    "RunbaseError": _envelope_schema({"message": _STRING, "code": _STRING}),
    "OpenAIError": _envelope_schema(
        {"message": _STRING, "type": _STRING, "param": _NULLABLE, "code": _NULLABLE}
    ),
    "ModelArkError": _envelope_schema(
        {"code": _STRING, "message": _STRING, "param": _STRING, "type": _STRING}
    ),
}
_MEANINGS: Final = {
    400: "The request cannot be read: a bad body, header or parameter",
    401: "No API key, or one that is invalid or disabled",
    402: "The balance is too low for this run",
    403: "Not allowed: the key's IP allowlist, spend limit (or, for ModelArk, the balance)",
    404: "No such run, video, task or file for this key (other accounts' and other modes' "
    "runs are missing too)",
    409: "The run is in the wrong state for this, or its Idempotency-Key is in use",
    413: "The request body is larger than any valid create",
    416: "No part of the Range is in the file (Content-Range: bytes */size)",
    429: "Rate limited (Retry-After), or over a quota or balance (OpenAI's insufficient_quota)",
    500: "An unexpected fault (internal_error)",
    503: "Not ready",
}
_CREATES: Final = (
    "/api/v1/runs",
    "/v1/runs",
    "/v1/videos",
    "/api/v3/contents/generations/tasks",
)


def _envelope(path: str) -> str:
    if path.startswith("/v1/videos"):
        return "OpenAIError"
    if path.startswith("/api/v3/"):
        return "ModelArkError"
    return "RunbaseError"


def error_statuses(method: str, path: str) -> set[int]:
    """The error statuses an operation can answer."""
    if path.startswith("/files/"):
        return {400, 404, 416, 500}
    if path in ("/readyz", "/metrics"):
        return {500}
    statuses = {400, 401, 403, 429, 500}  # every keyed operation: parsing, key, limits
    if "{" in path:
        statuses.add(404)
    if method == "post" and path in _CREATES:
        statuses |= {402, 404, 409, 413} if path.startswith("/api/v3/") else {402, 409, 413}
    if path.endswith("/runs/estimate"):
        statuses.add(413)
    if path.endswith("/cancel") or method == "delete":
        statuses.add(409)
    if path.endswith("/content"):
        statuses |= {409, 416}
    if path.startswith("/v1/videos"):
        statuses.discard(402)  # OpenAI's clients read a low balance as 429 insufficient_quota
    return statuses


def document_errors(document: dict[str, Any]) -> dict[str, Any]:
    """Declare every operation's error answers in `document` (changed in place)."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    schemas.pop("HTTPValidationError", None)
    schemas.pop("ValidationError", None)
    schemas.update(ENVELOPES)
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = operation.setdefault("responses", {})
            responses.pop("422", None)
            envelope = {"$ref": f"#/components/schemas/{_envelope(path)}"}
            for status in sorted(error_statuses(method, path)):
                answer = responses.setdefault(str(status), {"description": _MEANINGS[status]})
                answer["content"] = {"application/json": {"schema": envelope}}
            if method == "head":  # the answers of GET, without their bodies
                for answer in responses.values():
                    answer.pop("content", None)
    return document


def install_error_documents(app: FastAPI) -> None:
    """Make `app.openapi()` (and /openapi.json) answer with `document_errors` applied."""
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_errors(build())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
