"""The edge shared by the compatible surfaces (`ark_compat`, `openai_videos`): a route
class that answers every error of its router in the surface's own envelope.

A `RunbaseError` raised anywhere below a handler (auth, rate limit, checks, the charge)
is rendered by the surface's `ErrorRenderer` before the app's Runbase envelope handler
could see it; anything else is logged and answered as the surface's 500. Each surface
keeps its envelope and its mapping of Runbase errors in its own package.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from runbase.http.errors import ErrorRenderer, as_runbase_error


def enveloped_route(render: ErrorRenderer) -> type[APIRoute]:
    """An `APIRoute` class (a router's `route_class`) whose errors `render` answers."""

    class EnvelopedRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def answer_in_envelope(request: Request) -> Response:
                try:
                    return await handler(request)
                except Exception as exc:
                    return render(request, as_runbase_error(request, exc))

            return answer_in_envelope

    return EnvelopedRoute
