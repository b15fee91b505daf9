"""The admin console: one page and its static files, shipped in the package (no CDN, no
build step), so it works offline.

The page signs in with the admin token, which it keeps in the tab's sessionStorage and
sends only in the `Authorization` header of its own `/admin/api/` calls: never in a URL,
never to another host. The charts are drawn by uPlot (MIT), vendored unchanged from the
npm package `uplot` 1.6.32 (docs/admin.md says why this library).
"""

from __future__ import annotations

from importlib.resources import files
from typing import Final

from fastapi import APIRouter
from fastapi.responses import Response

from runbase.errors import RouteNotFound

router = APIRouter()

_STATIC_DIR: Final = files("runbase.http").joinpath("static", "admin")
_JS: Final = "text/javascript; charset=utf-8"
_CSS: Final = "text/css; charset=utf-8"
# Served by name from this table only, so no request path ever reaches the file system.
_STATIC_TYPES: Final = {
    "app.css": _CSS,
    "api.js": _JS,
    "app.js": _JS,
    "charts.js": _JS,
    "pages.js": _JS,
    "runs.js": _JS,
    "uPlot.iife.min.js": _JS,
    "uPlot.min.css": _CSS,
}
# The page holds the admin token: scripts and styles from this server only, so injected
# markup cannot run code that reads it. Output videos may live elsewhere (public_url, S3).
_PAGE_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "media-src 'self' https: http: blob:; connect-src 'self'; object-src 'none'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
}


@router.get("/admin")
@router.get("/admin/")
async def read_console() -> Response:
    """The console page."""
    page = _STATIC_DIR.joinpath("index.html").read_bytes()
    return Response(page, media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)


@router.get("/admin/static/{name}")
async def read_static_file(name: str) -> Response:
    media_type = _STATIC_TYPES.get(name)
    if media_type is None:
        raise RouteNotFound()
    folder = _STATIC_DIR.joinpath("vendor") if name.startswith("uPlot") else _STATIC_DIR
    return Response(folder.joinpath(name).read_bytes(), media_type=media_type)
