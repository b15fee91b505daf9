"""Admin API: accounts, their balances and ledgers, and credits."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from runbase.core import admin
from runbase.http.deps import get_services
from runbase.http.routes.admin.auth import AdminActor
from runbase.http.routes.admin.bodies import AccountCreate, CreditsAdd, parse_body

router = APIRouter()


@router.get("/accounts")
async def list_accounts(request: Request, actor: AdminActor) -> JSONResponse:
    """Every account with its balances and number of keys."""
    rows = await get_services(request).database.scan(admin.list_accounts)
    return JSONResponse({"data": [admin.describe_account(row) for row in rows]})


@router.post("/accounts", status_code=201)
async def create_account(request: Request, actor: AdminActor) -> JSONResponse:
    """Create an account, optionally with a starting balance (`balanceUsd`)."""
    body = await parse_body(request, AccountCreate)
    balance = admin.usd_to_micros("balanceUsd", body.balance_usd, allow_zero=True)
    account = await get_services(request).database.write(
        lambda connection: admin.create_account(
            connection, actor, name=body.name, balance_micros=balance
        )
    )
    return JSONResponse(admin.describe_account(account), status_code=201)


@router.get("/accounts/{ref}")
async def read_account(ref: str, request: Request, actor: AdminActor) -> JSONResponse:
    """An account (by id or name) with its keys and latest ledger entries."""

    def work(connection: Any) -> dict[str, Any]:
        account = admin.find_account(connection, ref)
        return {
            **admin.describe_account(account),
            "keys": [admin.describe_key(k) for k in admin.list_keys(connection, account.id)],
            "ledger": [
                admin.describe_ledger_entry(e) for e in admin.ledger(connection, account.id)
            ],
        }

    return JSONResponse(await get_services(request).database.scan(work))


@router.post("/accounts/{ref}/credits")
async def add_credits(ref: str, request: Request, actor: AdminActor) -> JSONResponse:
    """Add credits (`usd`, with an optional `note` kept in the ledger); answers the account."""
    body = await parse_body(request, CreditsAdd)
    amount = admin.usd_to_micros("usd", body.usd, allow_zero=False)
    account = await get_services(request).database.write(
        lambda connection: admin.add_credits(
            connection, actor, ref, amount_micros=amount, note=body.note
        )
    )
    return JSONResponse(admin.describe_account(account))
