"""Admin API: API keys (create with every option, list, disable, enable, delete)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from runbase.core import admin
from runbase.http.deps import get_services
from runbase.http.routes.admin.auth import AdminActor
from runbase.http.routes.admin.bodies import KeyCreate, parse_body

router = APIRouter()


@router.get("/keys")
async def list_keys(request: Request, actor: AdminActor) -> JSONResponse:
    """Keys not deleted, oldest first: every account's, or `?account=` (id or name)."""
    account = request.query_params.get("account")

    def work(connection: Any) -> list[Any]:
        owner = admin.find_account(connection, account).id if account else None
        return admin.list_keys(connection, owner)

    rows = await get_services(request).database.scan(work)
    return JSONResponse({"data": [admin.describe_key(row) for row in rows]})


@router.post("/keys", status_code=201)
async def create_key(request: Request, actor: AdminActor) -> JSONResponse:
    """Create a key; its secret is in this answer (`key`) and never again."""
    body = await parse_body(request, KeyCreate)
    options = admin.KeyOptions(
        name=body.name,
        spend_limit_cents=body.spend_limit_cents,
        allowed_ips=tuple(body.allowed_ips),
        daily_run_quota=body.daily_run_quota,
        rate_limit=body.rate_limit,
        is_test=body.test,
    )
    row, secret = await get_services(request).database.write(
        lambda connection: admin.create_key(connection, actor, body.account, options)
    )
    return JSONResponse({**admin.describe_key(row), "key": secret}, status_code=201)


@router.get("/keys/{key_id}")
async def read_key(key_id: str, request: Request, actor: AdminActor) -> JSONResponse:
    row = await get_services(request).database.scan(
        lambda connection: admin.get_key(connection, key_id)
    )
    return JSONResponse(admin.describe_key(row))


async def _set_enabled(request: Request, actor: Any, key_id: str, *, enabled: bool) -> JSONResponse:
    row = await get_services(request).database.write(
        lambda connection: admin.set_key_enabled(connection, actor, key_id, enabled=enabled)
    )
    return JSONResponse(admin.describe_key(row))


@router.post("/keys/{key_id}/disable")
async def disable_key(key_id: str, request: Request, actor: AdminActor) -> JSONResponse:
    """Requests with the key get 401 `invalid_api_key` (within a second) until re-enabled."""
    return await _set_enabled(request, actor, key_id, enabled=False)


@router.post("/keys/{key_id}/enable")
async def enable_key(key_id: str, request: Request, actor: AdminActor) -> JSONResponse:
    return await _set_enabled(request, actor, key_id, enabled=True)


@router.delete("/keys/{key_id}", status_code=204)
async def delete_key(key_id: str, request: Request, actor: AdminActor) -> Response:
    """Delete a key for good; its runs and usage stay."""
    await get_services(request).database.write(
        lambda connection: admin.delete_key(connection, actor, key_id)
    )
    return Response(status_code=204)
