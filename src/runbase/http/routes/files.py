"""`GET /files/{key}` (and `HEAD`): output files behind signed, expiring URLs.

Files speak HTTP as players and download tools expect (`http/file_response.py`): `HEAD`
answers as `GET` without the body, and `Range` is read strictly.

The blob store checks the link (`BlobStore.verify`) and says where the file is
(`BlobStore.locate`). With S3 storage, output URLs are presigned links to the bucket and
never come here: the bucket answers Range itself, and a presigned GET link does not answer
HEAD (the signature covers the method).
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from runbase.errors import RouteNotFound
from runbase.http.deps import get_services
from runbase.http.file_response import RangeFileResponse
from runbase.parsing import INT64_MAX, parse_int
from runbase.storage.blob_location import LocalFile

router = APIRouter(tags=["files"])


class FileNotFound(RouteNotFound):
    """No such file, or the link has expired."""

    code = "file_not_found"


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
    query = request.query_params
    expires = parse_int(query.get("expires", "0"), "expires", low=0, high=INT64_MAX)
    if not blobs.verify(key, expires, query.get("sig", "")):
        raise FileNotFound()
    try:
        location = blobs.locate(key, base_url=str(request.base_url), ttl_seconds=600)
    except FileNotFoundError:
        raise FileNotFound() from None
    if not isinstance(location, LocalFile):  # stores that serve elsewhere sign no such link
        raise FileNotFound()
    return RangeFileResponse(request, location)
