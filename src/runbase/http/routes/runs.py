"""`POST /api/v1/runs` and `GET /api/v1/runs/{id}` (also served under `/v1/runs`)."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import Row

from runbase.core import runs
from runbase.core.catalog import find_model
from runbase.errors import InvalidJson, MissingInput, MissingModel
from runbase.http.deps import Services, authorize, get_services
from runbase.http.ratelimit import rate_limit_headers
from runbase.http.schemas import RunCreate, RunPublic, run_public
from runbase.storage.tables import RunRow

router = APIRouter(tags=["runs"])


def _answer(request: Request, services: Services, run: RunRow | Row[Any]) -> JSONResponse:
    urls = None
    if run.status == runs.RunStatus.SUCCEEDED and run.output_keys is not None:
        base_url = services.settings.public_url or str(request.base_url)
        urls = [
            services.blobs.signed_url(
                key, base_url=base_url, ttl_seconds=services.settings.file_url_ttl_seconds
            )
            for key in run.output_keys
        ]
    return JSONResponse(run_public(run, urls), headers=rate_limit_headers(request))


def _parse_body(raw: bytes) -> tuple[str, dict[str, Any]]:
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidJson(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise MissingModel("the request body must be a JSON object with `model` and `input`")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise MissingModel()
    return model, body.get("input")  # type: ignore[return-value]


@router.post(
    "/runs",
    response_model=RunPublic,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": RunCreate.model_json_schema()}},
        }
    },
)
async def create_run(request: Request) -> JSONResponse:
    """Create a run: charged now, generated in the background; poll it with GET."""
    services = get_services(request)
    key = await authorize(request, services)
    model_id, raw_input = _parse_body(await request.body())
    spec = find_model(model_id)
    if not isinstance(raw_input, dict):
        raise MissingInput()
    validated = spec.validate_input(raw_input)
    cost = spec.price_micros(validated, services.settings.price_rates)
    run = await services.database.write(
        lambda connection: runs.create_run(
            connection, key=key, model=model_id, validated_input=validated, cost=cost
        )
    )
    return _answer(request, services, run)


@router.get("/runs/{run_id}", response_model=RunPublic)
async def read_run(run_id: str, request: Request) -> JSONResponse:
    """Read a run's status and, once it has succeeded, its output URLs."""
    services = get_services(request)
    key = await authorize(request, services)
    run = await services.database.read(
        lambda connection: runs.get_run(connection, run_id, account_id=key.account_id)
    )
    return _answer(request, services, run)
