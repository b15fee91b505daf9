"""`GET /admin/api/openapi.json`: the admin API's own OpenAPI document.

Apart from the public `/openapi.json`, which describes the public listener: the admin API
may answer on a listener of its own (`RUNBASE_ADMIN_HOST`/`_PORT`), and only there. The
document names every admin route, its path parameters and the `AdminToken` Bearer scheme
(declared once, on the admin router: `auth.admin_token`). Bodies are read by hand
(`bodies.py`), so their fields are described in docs/admin.md, not here.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.openapi.utils import get_openapi
from fastapi.responses import JSONResponse

from runbase import __version__


def build_document(api: APIRouter) -> dict[str, Any]:
    """The document of the routes of `api` (the admin router, with its prefix)."""
    document = get_openapi(
        title="runbase admin API",
        version=__version__,
        summary="The operator's side of runbase: accounts, credits, keys, runs, usage, audit.",
        routes=api.routes,
    )
    schemas = document.get("components", {}).get("schemas", {})
    schemas.pop("HTTPValidationError", None)  # requests are read by hand: never a 422
    schemas.pop("ValidationError", None)
    for operations in document["paths"].values():
        for operation in operations.values():
            responses = operation["responses"]
            responses.pop("422", None)
            responses["401"] = {"description": "missing_admin_token or invalid_admin_token"}
    return document


def serve(api: APIRouter) -> None:
    """Add the document's route to `api`, after every other route; the document is built
    when first asked for."""
    built: list[dict[str, Any]] = []

    @api.get("/openapi.json", include_in_schema=False)
    async def read_admin_document() -> JSONResponse:
        if not built:
            built.append(build_document(api))
        return JSONResponse(built[0])
