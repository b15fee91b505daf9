"""The admin API's request shapes, checked by plain pydantic.

Bodies are strict JSON (no strings for numbers, no unknown fields); query strings are
parsed leniently (they are text). Every failure becomes one envelope, 400
`invalid_request` with `fields`, `{"name": "what is wrong"}`, named as the API spells
them: the same envelope the domain's own checks (`core.admin`) answer with.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request

from runbase.core import listing
from runbase.errors import InvalidFields

M = TypeVar("M", bound=BaseModel)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)


class _Query(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class AccountCreate(_Body):
    name: str = Field(max_length=100)
    balance_usd: float = Field(0.0, alias="balanceUsd", description="Starting balance, USD")


class CreditsAdd(_Body):
    usd: float = Field(description="Amount to add, USD")
    note: str | None = Field(None, description="Why; kept on the ledger entry")


class KeyCreate(_Body):
    account: str = Field(description="The account's id or name")
    name: str = "default"
    test: bool = Field(False, description="A test key (sk-test-...)")
    allowed_ips: list[str] = Field(default_factory=list, alias="allowedIps")
    spend_limit_cents: int | None = Field(None, alias="spendLimitCents")
    daily_run_quota: int | None = Field(None, alias="dailyRunQuota")
    rate_limit: str | None = Field(None, alias="rateLimit", description="e.g. 100/second")


class UsageParams(_Query):
    start: datetime = Field(alias="from", description="ISO-8601 with a zone")
    end: datetime = Field(alias="to", description="ISO-8601 with a zone")
    bucket: Literal["hour", "day"] = "day"
    group_by: Literal["account", "key", "model", "backend"] | None = Field(None, alias="groupBy")
    account: str | None = None
    key: str | None = None
    model: str | None = None
    backend: str | None = None
    mode: Literal["live", "test", "all"] = "live"


class RunParams(_Query):
    account: str | None = None
    key: str | None = None
    status: Literal["pending", "processing", "succeeded", "failed", "canceled"] | None = None
    model: str | None = None
    backend: str | None = None
    created_after: datetime | None = Field(None, alias="createdAfter")
    created_before: datetime | None = Field(None, alias="createdBefore")
    limit: int = Field(20, ge=1, le=listing.MAX_PAGE)
    cursor: str | None = None


class AuditParams(_Query):
    limit: int = Field(50, ge=1, le=200)
    before: int | None = Field(None, ge=1, description="`nextBefore` of the previous page")
    action: str | None = None


async def parse_body(request: Request, model: type[M]) -> M:
    body = await request.body()
    try:
        return model.model_validate_json(body or b"{}")
    except ValidationError as exc:
        raise InvalidFields(_fields(exc)) from None


def parse_query(request: Request, model: type[M]) -> M:
    try:
        return model.model_validate(dict(request.query_params))
    except ValidationError as exc:
        raise InvalidFields(_fields(exc)) from None


def epoch_ms(name: str, moment: datetime | None) -> int | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        raise InvalidFields({name: "needs a time zone, such as Z for UTC"})
    return int(moment.timestamp() * 1000)


def _fields(exc: ValidationError) -> dict[str, str]:
    fields: dict[str, str] = {}
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        location: tuple[Any, ...] = error["loc"]
        name = ".".join(str(part) for part in location) or "body"
        fields.setdefault(name, _message(error))
    return fields


def _message(error: Any) -> str:
    if error["type"] == "json_invalid":
        return "the body is not valid JSON"
    if error["type"] == "extra_forbidden":
        return "is not a field of this request"
    return str(error["msg"])
