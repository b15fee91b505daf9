"""Admin API: usage figures and the audit log."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from runbase.core import audit, usage
from runbase.core.usage_sql import RunScope
from runbase.errors import InvalidFields
from runbase.http.deps import get_services
from runbase.http.routes.admin.auth import AdminActor
from runbase.http.routes.admin.bodies import AuditParams, UsageParams, epoch_ms, parse_query

router = APIRouter()


@router.get("/usage")
async def read_usage(request: Request, actor: AdminActor) -> JSONResponse:
    """Usage from `from` to `to` (rounded out to whole UTC buckets) by `bucket` (hour or
    day), optionally per `groupBy` (account, key, model, backend) and filtered by account
    id, key id, model and backend; `mode` live (default), test or all."""
    params = parse_query(request, UsageParams)
    start, end = epoch_ms("from", params.start), epoch_ms("to", params.end)
    assert start is not None and end is not None
    if end <= start:
        raise InvalidFields({"to": "must be after from"})
    start, end = usage.align(start, end, params.bucket)
    if (end - start) // usage.SPANS[params.bucket] > usage.MAX_BUCKETS:
        raise InvalidFields(
            {"to": f"at most {usage.MAX_BUCKETS} {params.bucket}s from `from`; use day buckets"}
        )
    scope = RunScope(
        start,
        end,
        account_id=params.account,
        key_id=params.key,
        model=params.model,
        backend=params.backend,
        mode=params.mode,
    )
    query = usage.UsageQuery(scope, bucket=params.bucket, group_by=params.group_by)
    report = await get_services(request).database.scan(
        lambda connection: usage.usage_report(connection, query)
    )
    return JSONResponse(report)


@router.get("/audit")
async def read_audit(request: Request, actor: AdminActor) -> JSONResponse:
    """Admin actions, newest first: who (the token's fingerprint or the command line's
    user), what, when and from which address. Page with `before` (`nextBefore`)."""
    params = parse_query(request, AuditParams)
    rows, next_before = await get_services(request).database.scan(
        lambda connection: audit.list_entries(
            connection, limit=params.limit, before_id=params.before, action=params.action
        )
    )
    return JSONResponse(
        {"data": [audit.describe_entry(row) for row in rows], "nextBefore": next_before}
    )
