"""The web playground at `/` and `/playground`: a page, its static files, its catalog.

The page is plain HTML, CSS and two scripts shipped inside the package: no CDN, no build
step, so it works offline. It is a client like any other: it calls the runs API with the
key the user pastes, which stays in the browser's localStorage and is sent to nothing but
this server's API.

The price it shows before a run is read from `/playground/catalog.json`, which is built
from `runbase.core.seedance` and the server's configured rates, so the page never keeps a
second copy of the size table or the price formula. The table answers at once and without
a key; once a key is pasted, the page asks `POST /api/v1/runs/estimate` once per set of
options and shows the server's own quote.
"""

from __future__ import annotations

from importlib.resources import files
from typing import Any, Final

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from runbase.core import seedance
from runbase.core.catalog import MODELS
from runbase.errors import RouteNotFound
from runbase.http.deps import ServicesDep

router = APIRouter(include_in_schema=False)

_STATIC_DIR: Final = files("runbase.http").joinpath("static", "playground")
# Served by name from this list only, so no request path ever reaches the file system.
_STATIC_TYPES: Final = {
    "app.css": "text/css; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "ratio.js": "text/javascript; charset=utf-8",
}
# The page holds an API key: allow scripts from this server only, so that injected markup
# cannot run code that reads the key. Output videos may live on another host (public_url).
_PAGE_HEADERS: Final = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
        "media-src 'self' https: http: blob:; connect-src 'self'; object-src 'none'; "
        "base-uri 'none'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


@router.get("/")
@router.get("/playground")
async def read_playground() -> Response:
    """The playground page."""
    page = _STATIC_DIR.joinpath("index.html").read_bytes()
    return Response(page, media_type="text/html; charset=utf-8", headers=_PAGE_HEADERS)


@router.get("/playground/static/{name}")
async def read_static_file(name: str) -> Response:
    """The page's stylesheet and script."""
    media_type = _STATIC_TYPES.get(name)
    if media_type is None:
        raise RouteNotFound()
    content = _STATIC_DIR.joinpath(name).read_bytes()
    return Response(content, media_type=media_type, headers={"Cache-Control": "no-cache"})


@router.get("/playground/catalog.json")
async def read_catalog(services: ServicesDep) -> JSONResponse:
    """Each model's choices, defaults, output sizes and prices, for the form."""
    return JSONResponse({"models": [describe_seedance(services.price_rates)]})


def describe_seedance(rates: seedance.PriceRates) -> dict[str, Any]:
    """The form's view of `bytedance/seedance-1.5-pro`, prices included.

    Prices come from the model's price table (`price_micros` itself), keyed
    "resolution|ratio|duration|audio" (audio is "audio" or "silent"); the defaults are what
    validation fills in.
    """
    defaults = seedance.validate_input({"prompt": "defaults"})
    del defaults["prompt"], defaults["image_urls"]
    prices = {}
    sizes: dict[str, dict[str, list[int]]] = {}
    for row in seedance.price_table(rates):
        audio = "audio" if row["generate_audio"] else "silent"
        key = f"{row['resolution']}|{row['aspect_ratio']}|{row['duration']}|{audio}"
        prices[key] = row["costUsd"]
        sizes.setdefault(row["resolution"], {})[row["aspect_ratio"]] = [row["width"], row["height"]]
    return {
        "id": seedance.MODEL_ID,
        "name": MODELS[seedance.MODEL_ID].display_name,
        "aspectRatios": list(seedance.ASPECT_RATIOS),
        "resolutions": list(seedance.RESOLUTIONS),
        "durations": list(seedance.DURATIONS),
        "defaults": defaults,
        "fps": seedance.FPS,
        "maxPromptChars": seedance.MAX_PROMPT_CHARS,
        "maxImages": seedance.MAX_IMAGES,
        "sizes": sizes,
        "prices": prices,
    }
