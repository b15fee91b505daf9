"""`GET /files/{key}`: output files behind signed, expiring URLs, with HTTP Range support."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import FileResponse

from runbase.errors import RouteNotFound
from runbase.http.deps import ServicesDep
from runbase.storage.blobs import LocalBlobStore

router = APIRouter(tags=["files"])


class FileNotFound(RouteNotFound):
    """No such file, or the link has expired."""

    code = "file_not_found"


@router.get("/files/{key:path}", response_class=FileResponse)
async def read_file(
    key: str, services: ServicesDep, expires: int = 0, sig: str = ""
) -> FileResponse:
    """Serve an output file; the URL's signature and expiry are checked first."""
    blobs = services.blobs
    if not isinstance(blobs, LocalBlobStore):  # S3 outputs are served by the bucket itself
        raise FileNotFound()
    try:
        path = blobs.path_for(key)
    except ValueError:
        raise FileNotFound() from None
    if not blobs.verify(key, expires, sig) or not path.is_file():
        raise FileNotFound()
    media_type = "video/mp4" if path.suffix == ".mp4" else None
    return FileResponse(path, media_type=media_type)
