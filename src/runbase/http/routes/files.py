"""`GET /files/{key}` (and `HEAD`): output files behind signed, expiring URLs.

Files speak HTTP as players and download tools expect: `HEAD` answers as `GET` without the
body, and `Range` is read strictly (`parsing.byte_ranges`, RFC 9110): a satisfiable one
gets 206, one of which no part is in the file 416 with `Content-Range: bytes */size`, and
a malformed one is ignored (the whole file, 200), as RFC 9110 allows.

With S3 storage, output URLs are presigned links to the bucket and never come here: the
bucket answers Range itself, and a presigned GET link does not answer HEAD (the signature
covers the method).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse
from starlette.types import Receive, Scope, Send

from runbase.errors import RouteNotFound
from runbase.http.deps import get_services
from runbase.parsing import INT64_MAX, byte_ranges, parse_int
from runbase.storage.blobs import LocalBlobStore

router = APIRouter(tags=["files"])


class FileNotFound(RouteNotFound):
    """No such file, or the link has expired."""

    code = "file_not_found"


class RangeFileResponse(FileResponse):
    """A file whose `Range` header is read by `parsing.byte_ranges` before Starlette sends
    it: Starlette's own reading answers a malformed header with a plain-text 400.

    Raises `RangeNotSatisfiable` (answered in the route's envelope) at construction, so
    build it inside the route's handler.
    """

    def __init__(self, request: Request, path: Path, *, media_type: str | None = None) -> None:
        super().__init__(path, media_type=media_type)
        size = path.stat().st_size
        parts = byte_ranges(request.headers.get("range"), size)
        # Starlette reads what is left: the ranges asked for, written plainly, or none.
        self._range = None if parts is None else "bytes=" + ",".join(f"{a}-{b}" for a, b in parts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(name, value) for name, value in scope["headers"] if name != b"range"]
        if self._range is not None:
            headers.append((b"range", self._range.encode()))
        await super().__call__({**scope, "headers": headers}, receive, send)


_FILE_PARAMETERS = [
    {"name": "expires", "in": "query", "required": True, "schema": {"type": "integer"}},
    {"name": "sig", "in": "query", "required": True, "schema": {"type": "string"}},
    {
        "name": "Range",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "examples": ["bytes=0-1023"]},
    },
]


_FILE_ROUTE: Final[dict[str, Any]] = {
    "response_class": FileResponse,
    "responses": {
        200: {"content": {"video/mp4": {}}, "description": "The file"},
        206: {"content": {"video/mp4": {}}, "description": "The parts the Range asked for"},
    },
    "openapi_extra": {"parameters": _FILE_PARAMETERS},
}


# Two routes, not one with two methods: each needs its own operation in the document.
@router.head("/files/{key:path}", **_FILE_ROUTE)
@router.get("/files/{key:path}", **_FILE_ROUTE)
async def read_file(key: str, request: Request) -> FileResponse:
    """Serve an output file; the URL's signature and expiry are checked first."""
    blobs = get_services(request).blobs
    if not isinstance(blobs, LocalBlobStore):  # S3 outputs are served by the bucket itself
        raise FileNotFound()
    query = request.query_params
    expires = parse_int(query.get("expires", "0"), "expires", low=0, high=INT64_MAX)
    try:
        path = blobs.path_for(key)
    except ValueError:
        raise FileNotFound() from None
    if not blobs.verify(key, expires, query.get("sig", "")) or not path.is_file():
        raise FileNotFound()
    media_type = "video/mp4" if path.suffix == ".mp4" else None
    return RangeFileResponse(request, path, media_type=media_type)
