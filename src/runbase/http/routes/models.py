"""Extensions: `GET /api/v1/models` and `GET /api/v1/models/{owner}/{name}`.

Each model's input JSON Schema (from the validator's own field table), output schema,
prices (from the pricing function itself, at this server's rates), the engines that
serve it and the licences of their weights. Answers carry an `ETag`; `If-None-Match` with
it is answered 304, no body.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from runbase.core.catalog import MODELS, ModelSpec
from runbase.engines import engine_license
from runbase.errors import UnknownModel
from runbase.http.deps import ApiKey, Services, get_services
from runbase.http.ratelimit import rate_limit_headers

router = APIRouter(tags=["models"])


class EngineLicensePublic(BaseModel):
    backend: str
    license: str = Field(description="The licence of the engine's weights, or its terms")
    url: str | None
    note: str


class ModelPublic(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="allow")

    id: str
    owner: str
    name: str
    display_name: str = Field(alias="displayName")
    backends: list[str] = Field(description="Engines configured to serve it, in order")
    backend: str | None = Field(description="The engine serving it now, once one started")
    test_backend: str = Field(alias="testBackend", description="The engine of test keys")
    licenses: list[EngineLicensePublic] = Field(
        description="For each engine above: the licence of its weights (or its provider's terms)"
    )
    input_schema: dict[str, Any] = Field(alias="inputSchema")
    output_schema: dict[str, Any] = Field(alias="outputSchema")
    pricing: dict[str, Any]


class ModelList(BaseModel):
    data: list[ModelPublic]


def describe_model(services: Services, spec: ModelSpec) -> dict[str, Any]:
    settings = services.settings
    rates = services.price_rates
    owner, _, name = spec.id.partition("/")
    running = [worker.backend for worker in services.workers if worker.backend]
    return {
        "id": spec.id,
        "owner": owner,
        "name": name,
        "displayName": spec.display_name,
        "backends": list(settings.engines),
        "backend": running[0] if running else None,
        "testBackend": settings.test_engine,
        "licenses": [
            {"backend": name, **asdict(engine_license(name))}
            for name in dict.fromkeys([*settings.engines, settings.test_engine])
        ],
        "inputSchema": spec.input_schema(),
        "outputSchema": spec.output_schema(),
        "pricing": {
            "currency": "micro-USD",
            "formula": "video tokens = width x height x 24 x seconds / 1024, rounded up to "
            "whole micro-USD",
            "silentPerMillionTokens": rates.silent,
            "audioPerMillionTokens": rates.audio,
            "table": spec.price_table(rates),
        },
    }


def _tagged(request: Request, body: dict[str, Any]) -> Response:
    """The answer with a strong ETag, or 304 when the client already has this version."""
    content = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
    etag = '"' + hashlib.sha256(content).hexdigest()[:32] + '"'
    headers = {**rate_limit_headers(request), "ETag": etag, "Cache-Control": "no-cache"}
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None:
        tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        if etag in tags or "*" in tags:
            return Response(status_code=304, headers=headers)
    return JSONResponse(body, headers=headers)


_CONDITIONAL = {
    "parameters": [
        {
            "name": "If-None-Match",
            "in": "header",
            "required": False,
            "schema": {"type": "string"},
            "description": "An ETag from an earlier answer: 304 when nothing changed",
        }
    ]
}


@router.get(
    "/models",
    response_model=ModelList,
    responses={304: {"description": "Not modified"}},
    openapi_extra=_CONDITIONAL,
)
async def list_models(request: Request, key: ApiKey) -> Response:
    """Extension: every model this server runs, with schemas, prices and engines."""
    services = get_services(request)
    return _tagged(request, {"data": [describe_model(services, s) for s in MODELS.values()]})


@router.get(
    "/models/{owner}/{name}",
    response_model=ModelPublic,
    responses={304: {"description": "Not modified"}},
    openapi_extra=_CONDITIONAL,
)
async def read_model(owner: str, name: str, request: Request, key: ApiKey) -> Response:
    """Extension: one model's input and output schemas, prices and engines."""
    services = get_services(request)
    spec = MODELS.get(f"{owner}/{name}")
    if spec is None:
        raise UnknownModel(f"model {owner}/{name!s} is not available; see GET /api/v1/models")
    return _tagged(request, describe_model(services, spec))
