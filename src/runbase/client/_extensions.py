"""What runbase answers beyond the public contract: the account and the model catalogue.

Amounts are integers in micro-USD (1 USD = 1,000,000) and say so in their names; the key's
spend limit is in cents, as the API sets it.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, kw_only=True)
class KeyInfo:
    """The API key the client uses: what it has spent, and its limits."""

    id: str
    name: str
    prefix: str
    is_test: bool
    spent_micro_usd: int
    """Lifetime spend net of refunds."""
    spend_limit_cents: int | None
    daily_run_quota: int | None
    runs_last_24h: int
    rate_limit: str


@dataclass(frozen=True, kw_only=True)
class Account:
    """`client.account()`: the account's balances and the key's spend and limits."""

    id: str
    name: str
    balance_micro_usd: int
    test_balance_micro_usd: int
    """The balance that runs of test keys (`sk-test-...`) use; it never runs out."""
    key: KeyInfo
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


@dataclass(frozen=True, kw_only=True)
class EngineLicense:
    """The licence of an engine's weights (or the terms of the provider it forwards to)."""

    backend: str
    license: str
    url: str | None
    note: str


@dataclass(frozen=True, kw_only=True)
class ModelInfo:
    """One model of `client.models.list()`: its schemas, prices and engines."""

    id: str
    display_name: str
    backends: tuple[str, ...]
    """The engines configured to serve it, in order."""
    backend: str | None
    """The engine serving it now, once one has started."""
    licenses: tuple[EngineLicense, ...]
    input_schema: Mapping[str, Any]
    pricing: Mapping[str, Any]
    """The price table in micro-USD (`pricing["currency"]` says so)."""
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


def read_account(data: Mapping[str, Any]) -> Account:
    account, key = data["account"], data["key"]
    return Account(
        id=account["id"],
        name=account["name"],
        balance_micro_usd=int(account["balanceUsd"]),
        test_balance_micro_usd=int(account.get("testBalanceUsd") or 0),
        key=KeyInfo(
            id=key["id"],
            name=key["name"],
            prefix=key["prefix"],
            is_test=bool(key.get("isTest")),
            spent_micro_usd=int(key.get("spentUsd") or 0),
            spend_limit_cents=key.get("spendLimitCents"),
            daily_run_quota=key.get("dailyRunQuota"),
            runs_last_24h=int(key.get("runsLast24h") or 0),
            rate_limit=str(key.get("rateLimit") or ""),
        ),
        raw=dict(data),
    )


def read_model(data: Mapping[str, Any]) -> ModelInfo:
    return ModelInfo(
        id=data["id"],
        display_name=data.get("displayName") or data["id"],
        backends=tuple(data.get("backends") or ()),
        backend=data.get("backend"),
        licenses=tuple(
            EngineLicense(
                backend=item["backend"],
                license=item["license"],
                url=item.get("url"),
                note=item.get("note") or "",
            )
            for item in data.get("licenses") or ()
        ),
        input_schema=data.get("inputSchema") or {},
        pricing=data.get("pricing") or {},
        raw=dict(data),
    )
