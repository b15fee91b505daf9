"""Extensions: `GET /api/v1/account` (balance and this key's spend and limits) and
`GET /api/v1/webhooks/secret` (the account's webhook signing secret)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection

from runbase.core import billing, keys, webhooks
from runbase.core.clock import now_ms
from runbase.core.creation import DAY_MS
from runbase.http.deps import ApiKey, get_services
from runbase.http.ratelimit import rate_limit_headers

router = APIRouter(tags=["account"])


class AccountPublic(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: str
    name: str
    balance_usd: int = Field(alias="balanceUsd", description="Balance in micro-USD")
    test_balance_usd: int = Field(
        alias="testBalanceUsd",
        description="The balance that runs of test keys use (micro-USD); it never runs out",
    )


class KeyPublic(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    id: str
    name: str
    prefix: str
    is_test: bool = Field(alias="isTest")
    spent_usd: int = Field(alias="spentUsd", description="Lifetime spend net of refunds, micro-USD")
    spend_limit_cents: int | None = Field(alias="spendLimitCents")
    daily_run_quota: int | None = Field(alias="dailyRunQuota")
    runs_last_24h: int = Field(alias="runsLast24h")
    rate_limit: str = Field(alias="rateLimit")


class AccountAnswer(BaseModel):
    account: AccountPublic
    key: KeyPublic


class WebhookSecret(BaseModel):
    key: str = Field(description="`whsec_...`: verify webhook-signature with it")


@router.get("/account", response_model=AccountAnswer)
async def read_account(request: Request, key: ApiKey) -> JSONResponse:
    """Extension: the account's balance, and this key's spend so far and its limits."""
    services = get_services(request)

    def read(connection: Connection) -> dict[str, Any]:
        account = billing.get_account(connection, key.account_id)
        key_row = keys.get_key(connection, key.id)
        recent = keys.count_recent_runs(connection, key.id, since_ms=now_ms() - DAY_MS)
        return {
            "account": {
                "id": account.id,
                "name": account.name,
                "balanceUsd": account.balance_micros,
                "testBalanceUsd": account.test_balance_micros,
            },
            "key": {
                "id": key_row.id,
                "name": key_row.name,
                "prefix": key_row.prefix,
                "isTest": bool(key_row.is_test),
                "spentUsd": key_row.spent_micros,
                "spendLimitCents": key_row.spend_limit_cents,
                "dailyRunQuota": key_row.daily_run_quota,
                "runsLast24h": recent,
                "rateLimit": key_row.rate_limit or services.settings.rate_limit,
            },
        }

    answer = await services.database.scan(read)  # the 24 h count may read many runs
    return JSONResponse(answer, headers=rate_limit_headers(request))


@router.get("/webhooks/secret", response_model=WebhookSecret)
async def read_webhook_secret(request: Request, key: ApiKey) -> JSONResponse:
    """Extension: the account's webhook signing secret (made on first request); a test
    key's is the secret of test runs' webhooks, another one."""
    services = get_services(request)
    secret = await services.database.write(
        lambda connection: webhooks.account_secret(connection, key.account_id, is_test=key.is_test)
    )
    return JSONResponse({"key": secret}, headers=rate_limit_headers(request))
