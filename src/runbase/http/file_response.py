"""A stored file sent as players and download tools expect: `HEAD` answers as `GET`
without the body, and `Range` is read strictly (`parsing.byte_ranges`, RFC 9110): a
satisfiable one gets 206, one of which no part is in the file 416 with
`Content-Range: bytes */size`, and a malformed one is ignored (the whole file, 200), as
RFC 9110 allows. Used by `/files/` and the OpenAI-compatible content route.
"""

from __future__ import annotations

from fastapi import Request
from fastapi.responses import FileResponse
from starlette.types import Receive, Scope, Send

from runbase.parsing import byte_ranges
from runbase.storage.blob_location import LocalFile

__all__ = ["RangeFileResponse"]


class RangeFileResponse(FileResponse):
    """A file whose `Range` header is read by `parsing.byte_ranges` before Starlette sends
    it: Starlette's own reading answers a malformed header with a plain-text 400.

    Raises `RangeNotSatisfiable` (answered in the route's envelope) at construction, so
    build it inside the route's handler.
    """

    def __init__(self, request: Request, file: LocalFile) -> None:
        media_type = "video/mp4" if file.path.suffix == ".mp4" else None
        super().__init__(file.path, media_type=media_type)
        parts = byte_ranges(request.headers.get("range"), file.size)
        # Starlette reads what is left: the ranges asked for, written plainly, or none.
        self._range = None if parts is None else "bytes=" + ",".join(f"{a}-{b}" for a, b in parts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = [(name, value) for name, value in scope["headers"] if name != b"range"]
        if self._range is not None:
            headers.append((b"range", self._range.encode()))
        await super().__call__({**scope, "headers": headers}, receive, send)
