"""Admin API: the runs browser (every account's runs) and cancel."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from runbase.core import listing, run_browser
from runbase.core.run_view import Run
from runbase.core.runs import CancelAnswer
from runbase.http.deps import Services, get_services
from runbase.http.routes.admin.auth import AdminActor
from runbase.http.routes.admin.bodies import RunParams, epoch_ms, parse_query
from runbase.http.run_object import run_read
from runbase.http.waiting import wait_for_run

router = APIRouter()


def _run(services: Services, run: Run, base_url: str) -> dict[str, Any]:
    """The run object as its owner sees it, with whose it is."""
    return {
        **run_read(services, run, base_url),
        "accountId": run.account_id,
        "keyId": run.key_id,
        "isTest": bool(run.is_test),
        "attempts": run.attempts,
    }


@router.get("/runs")
async def list_runs(request: Request, actor: AdminActor) -> JSONResponse:
    """Runs of every account, newest first; filter by account, key, status, model, backend
    and creation time; page with `cursor` (`nextCursor` of the previous page)."""
    params = parse_query(request, RunParams)
    query = run_browser.RunQuery(
        account_id=params.account,
        key_id=params.key,
        status=params.status,
        model=params.model,
        backend=params.backend,
        created_after_ms=epoch_ms("createdAfter", params.created_after),
        created_before_ms=epoch_ms("createdBefore", params.created_before),
    )
    after = listing.decode_cursor(params.cursor) if params.cursor else None
    services = get_services(request)
    rows, next_cursor = await services.database.scan(
        lambda connection: run_browser.list_runs(connection, query, limit=params.limit, after=after)
    )
    base_url = str(request.base_url)
    return JSONResponse(
        {"data": [_run(services, row, base_url) for row in rows], "nextCursor": next_cursor}
    )


@router.get("/runs/{run_id}")
async def read_run(run_id: str, request: Request, actor: AdminActor) -> JSONResponse:
    services = get_services(request)
    run = await services.database.scan(lambda connection: run_browser.get_run(connection, run_id))
    return JSONResponse(_run(services, run, str(request.base_url)))


@router.post("/runs/{run_id}/cancel")
async def cancel_run(run_id: str, request: Request, actor: AdminActor) -> JSONResponse:
    """Cancel a run of any account, refunded in full; answers the run as it then stands
    (a processing run's engine is given `RUNBASE_CANCEL_WAIT_SECONDS` to stop)."""
    services = get_services(request)
    answer = await services.database.write(
        lambda connection: run_browser.cancel_run(connection, actor, run_id)
    )
    services.signals.notify(run_id)
    run = await services.database.scan(lambda connection: run_browser.get_run(connection, run_id))
    if answer is CancelAnswer.REQUESTED:
        await wait_for_run(
            services,
            run_id,
            owner=run_browser.owner_of(run),
            timeout=services.settings.cancel_wait_seconds,
        )
        run = await services.database.scan(
            lambda connection: run_browser.get_run(connection, run_id)
        )
    return JSONResponse({**_run(services, run, str(request.base_url)), "cancel": answer.value})
