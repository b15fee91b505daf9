"""The admin perimeter, as ASGI, in front of every `/admin` request (API and console).

- With a separate admin listener (`RUNBASE_ADMIN_HOST`/`RUNBASE_ADMIN_PORT`), `/admin`
  answers only there, and the admin listener answers nothing else: both sides say 404.
- State-changing admin requests from another site are refused before anything reads them
  (403 `cross_site_request`): a browser's `Origin` must be this server's own, and
  `Sec-Fetch-Site` must not say cross-site. Clients that send neither (curl, scripts) pass;
  they still need the token.
- Every admin answer, errors included, carries `frame-ancestors 'none'` (no clickjacking)
  and `Cache-Control: no-store` (a new key's secret is never cached).
"""

from __future__ import annotations

from typing import Final
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from runbase.config import Settings
from runbase.errors import CrossSiteRequest, RouteNotFound, RunbaseError
from runbase.http.errors import error_response

LISTENER: Final = "runbase.listener"
"""Scope key set by `AdminListener`: the request came in on the admin listener."""
_SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})
_HEADERS: Final = [
    (b"content-security-policy", b"frame-ancestors 'none'"),
    (b"x-frame-options", b"DENY"),
    (b"cache-control", b"no-store"),
    (b"referrer-policy", b"no-referrer"),
    (b"x-content-type-options", b"nosniff"),
]


def is_admin_path(path: str) -> bool:
    return path == "/admin" or path.startswith("/admin/")


class AdminListener:
    """Wraps the app for the separate admin listener: marks each request as arriving there."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        await self.app({**scope, LISTENER: "admin"}, receive, send)


class AdminGuard:
    def __init__(self, app: ASGIApp, settings: Settings) -> None:
        self.app = app
        self._separate = settings.admin_listener_is_separate
        self._enabled = settings.admin
        public = urlsplit(settings.public_url) if settings.public_url else None
        self._public_netloc = public.netloc.lower() if public else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        admin_path = is_admin_path(scope["path"])
        if self._separate and admin_path != (scope.get(LISTENER) == "admin"):
            await self._refuse(scope, receive, send, RouteNotFound())
            return
        if not admin_path or not self._enabled:
            await self.app(scope, receive, send)
            return
        if scope["method"] not in _SAFE_METHODS and self._is_cross_site(scope):
            await self._refuse(scope, receive, send, CrossSiteRequest())
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", ())}
                # A page with its own policy keeps it; a second policy header is enforced
                # beside it, so frame-ancestors holds whatever the page says.
                extra = [
                    (name, value)
                    for name, value in _HEADERS
                    if name not in names or name == b"content-security-policy"
                ]
                message["headers"] = [*message.get("headers", ()), *extra]
            await send(message)

        await self.app(scope, receive, send_with_headers)

    def _is_cross_site(self, scope: Scope) -> bool:
        headers = {n.decode("latin-1"): v.decode("latin-1") for n, v in scope["headers"]}
        fetch_site = headers.get("sec-fetch-site")
        if fetch_site is not None and fetch_site not in ("same-origin", "none"):
            return True
        origin = headers.get("origin")
        if origin is None:
            return False
        netloc = urlsplit(origin).netloc.lower() if origin != "null" else ""
        allowed = {headers.get("host", "").lower(), self._public_netloc}
        return not netloc or netloc not in allowed

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, error: RunbaseError
    ) -> None:
        response = error_response(Request(scope), error)
        if isinstance(error, CrossSiteRequest):
            response.headers.update({k.decode(): v.decode() for k, v in _HEADERS})
        await response(scope, receive, send)
