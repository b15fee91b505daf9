"""Extensions: `GET /api/v1/runs` (list) and `POST /api/v1/runs/{id}/cancel`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from runbase.core import listing, runs
from runbase.errors import BadParameter, CancelTimedOut, RunAlreadyFinished
from runbase.http.deps import ApiKey, get_services
from runbase.http.ratelimit import rate_limit_headers
from runbase.http.run_object import run_read
from runbase.http.schemas import RunPage, RunRead
from runbase.http.waiting import cancel_and_wait
from runbase.parsing import check_text, parse_int

router = APIRouter(tags=["runs"])

_STATUSES = [status.value for status in runs.RunStatus]
_LIST_PARAMETERS = [
    {
        "name": "limit",
        "in": "query",
        "required": False,
        "schema": {"type": "integer", "minimum": 1, "maximum": listing.MAX_PAGE, "default": 20},
    },
    {
        "name": "cursor",
        "in": "query",
        "required": False,
        "schema": {"type": "string"},
        "description": "`nextCursor` of the previous page",
    },
    {"name": "status", "in": "query", "required": False, "schema": {"enum": _STATUSES}},
    {"name": "model", "in": "query", "required": False, "schema": {"type": "string"}},
    {
        "name": "created_after",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "format": "date-time"},
    },
    {
        "name": "created_before",
        "in": "query",
        "required": False,
        "schema": {"type": "string", "format": "date-time"},
    },
]


def _timestamp_ms(name: str, value: str | None) -> int | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
        if moment.tzinfo is None:
            raise BadParameter(name, f"{name} needs a time zone, such as Z for UTC")
        return int(moment.timestamp() * 1000)
    except (ValueError, OverflowError):  # not a time, or beyond the calendar at UTC
        raise BadParameter(
            name, f"{name} must be an ISO-8601 time, such as 2026-06-01T12:00:00Z"
        ) from None


@router.get("/runs", response_model=RunPage, openapi_extra={"parameters": _LIST_PARAMETERS})
async def list_runs(request: Request, key: ApiKey) -> JSONResponse:
    """Extension: the account's runs, newest first, filtered by status, model and time."""
    services = get_services(request)
    query = request.query_params
    status = query.get("status")
    if status is not None and status not in _STATUSES:
        raise BadParameter("status", f"status must be one of {', '.join(_STATUSES)}")
    cursor = query.get("cursor")
    model = query.get("model")
    where = listing.RunFilter(
        status=status,
        model=None if model is None else check_text(model, "model"),
        created_after_ms=_timestamp_ms("created_after", query.get("created_after")),
        created_before_ms=_timestamp_ms("created_before", query.get("created_before")),
    )
    limit = parse_int(query.get("limit", "20"), "limit", low=1, high=listing.MAX_PAGE)
    after = listing.decode_cursor(cursor) if cursor is not None else None
    rows, next_cursor = await services.database.scan(
        lambda connection: listing.list_runs(
            connection, owner=key.owner, limit=limit, after=after, where=where
        )
    )
    base_url = str(request.base_url)
    page: dict[str, Any] = {
        "data": [run_read(services, row, base_url) for row in rows],
        "nextCursor": next_cursor,
    }
    return JSONResponse(page, headers=rate_limit_headers(request))


@router.post(
    "/runs/{run_id}/cancel",
    response_model=RunRead,
    responses={409: {"description": "run_already_finished or cancel_timeout"}},
)
async def cancel_run(run_id: str, request: Request, key: ApiKey) -> JSONResponse:
    """Extension: cancel a run and refund it in full.

    A pending run is canceled at once. A processing run's engine is asked to stop; the
    answer waits (up to `RUNBASE_CANCEL_WAIT_SECONDS`) until it has, or is 409
    `cancel_timeout` (the request stays in place). A finished run is 409
    `run_already_finished`; canceling a canceled run again is harmless.
    """
    services = get_services(request)
    run = await cancel_and_wait(services, run_id, owner=key.owner)
    if run.status == runs.RunStatus.PROCESSING:
        raise CancelTimedOut(
            f"the engine did not stop within {services.settings.cancel_wait_seconds:g} s; the "
            "run stays marked for canceling and is canceled and refunded when it stops"
        )
    if run.status != runs.RunStatus.CANCELED:
        raise RunAlreadyFinished(f"the run had already finished ({run.status})")
    return JSONResponse(
        run_read(services, run, str(request.base_url)), headers=rate_limit_headers(request)
    )
