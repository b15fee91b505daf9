"""`POST /api/v1/runs` and `GET /api/v1/runs/{id}` (also served under `/v1/runs`), and
`POST /api/v1/runs/estimate`, which prices a create without making it.

Create's extensions (README "Beyond the contract"), all ignored by contract clients:
`webhook` and `webhookEventsFilter` in the body; the `Idempotency-Key`, `Cancel-After` and
`Prefer: wait` headers. They are checked after the contract's checks, so that a contract
request is refused exactly as before.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from runbase.core import listing, runs
from runbase.core.catalog import MODELS
from runbase.core.run_view import Run
from runbase.http import submission
from runbase.http.deps import ApiKey, Services, get_services
from runbase.http.ratelimit import rate_limit_headers
from runbase.http.run_object import public_run, run_read
from runbase.http.schemas import CostEstimate, RunCreate, RunPublic, RunRead
from runbase.http.waiting import wait_for_run
from runbase.parsing import cancel_after_ms, wait_preference
from runbase.storage import inputs

router = APIRouter(tags=["runs"])


def _create_schema() -> dict[str, Any]:
    """The create body's schema, with `input` the model's own input schema (while there is
    one model; with more, each model's is at GET /api/v1/models)."""
    schema = RunCreate.model_json_schema(by_alias=True)
    if len(MODELS) == 1:
        [spec] = MODELS.values()
        schema["properties"]["model"]["enum"] = [spec.id]
        input_schema = spec.input_schema()
        input_schema.pop("$schema", None)
        schema["properties"]["input"] = input_schema
    return schema


_CREATE_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": _create_schema()}},
    }
}
_CREATE_HEADERS = [
    {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "maxLength": 255},
        "description": "Extension: the same key and body within 24 h return the first run "
        "(with `Idempotent-Replayed: true`) instead of creating and charging another; the "
        "same key with another body is 409 `idempotency_key_reused`.",
    },
    {
        "name": "Cancel-After",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "examples": ["90s", "10m", "1h30m"]},
        "description": "Extension: a run not finished this long after creation is canceled "
        "and refunded.",
    },
    {
        "name": "Prefer",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "examples": ["wait", "wait=30"]},
        "description": "Extension: `wait` or `wait=N` (N <= 60) holds the answer until the run "
        "has finished or N seconds have passed, and answers with the run as it then stands.",
    },
]


def _answer(
    request: Request,
    services: Services,
    run: Run,
    *,
    is_read: bool = False,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    # Only signed links need the base URL, and working it out costs as much as the read.
    needs_base = run.status == runs.RunStatus.SUCCEEDED or inputs.has_stored_images(run.input)
    base_url = str(request.base_url) if needs_base else ""
    body = run_read(services, run, base_url) if is_read else public_run(services, run, base_url)
    all_headers = rate_limit_headers(request)
    if headers:
        all_headers.update(headers)
    return JSONResponse(body, headers=all_headers)


@router.post(
    "/runs",
    response_model=RunPublic,
    openapi_extra={**_CREATE_BODY, "parameters": _CREATE_HEADERS},
)
async def create_run(request: Request, key: ApiKey) -> JSONResponse:
    """Create a run: charged now, generated in the background; poll it with GET."""
    services = get_services(request)
    prepared = submission.prepare(services, await submission.read_json_body(request))
    headers = request.headers
    wait = wait_preference(headers.get("prefer"))
    cancel_after = cancel_after_ms(headers.get("cancel-after"))
    run, replayed = await submission.submit(
        services, key, prepared, request, cancel_after_ms=cancel_after
    )
    extra = {"Idempotent-Replayed": "true"} if replayed else {}
    if wait is not None:
        run = await wait_for_run(services, run.id, owner=key.owner, timeout=wait)
        extra["Preference-Applied"] = f"wait={wait}"
    return _answer(request, services, run, headers=extra)


@router.post(
    "/runs/estimate",
    response_model=CostEstimate,
    openapi_extra={**_CREATE_BODY},
)
async def estimate_run(request: Request, key: ApiKey) -> JSONResponse:
    """Extension: what a create with this body would cost, from the same pricing; no charge."""
    services = get_services(request)
    prepared = submission.prepare(services, await submission.read_json_body(request))
    answer = {"model": prepared.model, "costUsd": prepared.cost, "input": prepared.validated}
    return JSONResponse(answer, headers=rate_limit_headers(request))


@router.get("/runs/{run_id}", response_model=RunRead)
async def read_run(run_id: str, request: Request, key: ApiKey) -> JSONResponse:
    """Read a run's status and, once it has succeeded, its output URLs."""
    services = get_services(request)
    run = await services.database.read(
        lambda connection: listing.get_run(connection, run_id, owner=key.owner)
    )
    return _answer(request, services, run, is_read=True)
