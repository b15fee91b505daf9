"""What an operator does: accounts, credits and API keys, each change audited.

One implementation for both surfaces: the `runbase accounts|credits|keys` commands and the
admin API call these functions, so they refuse the same things with the same messages.
Refusals are `RunbaseError`s: `InvalidFields` (named by the API's field names),
`AccountNotFound`, `AccountExists`, `KeyNotFound`. Like all of `core/`, the functions take
a `Connection` inside a transaction that the caller owns; each change writes its audit
entry in that same transaction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, cast

from sqlalchemy import Connection, Row, Table, func, select, update

from runbase.core import audit, billing, keys
from runbase.core.audit import Actor
from runbase.core.clock import format_timestamp, now_ms
from runbase.errors import AccountExists, AccountNotFound, InvalidFields, KeyNotFound
from runbase.storage.tables import AccountRow, ApiKeyRow, LedgerEntryRow

_ACCOUNTS = cast(Table, AccountRow.__table__)
_KEYS = cast(Table, ApiKeyRow.__table__)
_LEDGER = cast(Table, LedgerEntryRow.__table__)
MAX_NAME = 100
MAX_NOTE = 500
MAX_USD = 1_000_000_000  # far above any real top-up; keeps micro-USD inside 64 bits


@dataclass(frozen=True)
class KeyOptions:
    """Everything a new key can be given (README "Administration")."""

    name: str = "default"
    spend_limit_cents: int | None = None
    allowed_ips: tuple[str, ...] = field(default_factory=tuple)
    daily_run_quota: int | None = None
    rate_limit: str | None = None
    is_test: bool = False


# ---- checks shared by both surfaces ------------------------------------------------------


def usd_to_micros(name: str, usd: float, *, allow_zero: bool) -> int:
    """A USD amount from an operator, as micro-USD; refused unless finite and in range."""
    if not math.isfinite(usd) or usd < 0 or (usd == 0 and not allow_zero):
        raise InvalidFields({name: "must be positive" if not allow_zero else "cannot be negative"})
    if usd > MAX_USD:
        raise InvalidFields({name: f"must be at most {MAX_USD:,}"})
    return billing.usd_to_micros(usd)


def _check_name(name: str, what: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME or not name.isprintable():
        raise InvalidFields({"name": f"{what} names are 1 to {MAX_NAME} printable characters"})
    return name


def _check_key_options(options: KeyOptions) -> tuple[str, list[str]]:
    problems: dict[str, str] = {}
    name = options.name
    try:
        name = _check_name(name, "key")
    except InvalidFields as exc:
        problems.update(exc.fields)
    try:
        allowed = keys.normalize_allowlist(options.allowed_ips)
    except ValueError as exc:
        problems["allowedIps"], allowed = str(exc), []
    if options.spend_limit_cents is not None and options.spend_limit_cents < 0:
        problems["spendLimitCents"] = "cannot be negative"
    if options.daily_run_quota is not None and options.daily_run_quota < 1:
        problems["dailyRunQuota"] = "must be at least 1"
    if options.rate_limit is not None:
        from limits import parse  # the notation the rate limiter itself reads

        try:
            parse(options.rate_limit)
        except ValueError:
            problems["rateLimit"] = (
                f"{options.rate_limit!r} is not a rate limit such as '100/second' or '20/10seconds'"
            )
    if problems:
        raise InvalidFields(problems)
    return name, allowed


# ---- accounts and credits ----------------------------------------------------------------


def find_account(connection: Connection, ref: str) -> Row[Any]:
    """An account by id or, failing that, by name."""
    account = connection.execute(select(_ACCOUNTS).where(_ACCOUNTS.c.id == ref)).first()
    account = account or billing.find_account(connection, ref)
    if account is None:
        raise AccountNotFound(f"no account named {ref!r}")
    return account


def list_accounts(connection: Connection) -> list[Row[Any]]:
    """Every account, oldest first, with `key_count` (keys not deleted)."""
    counts = (
        select(_KEYS.c.account_id, func.count().label("key_count"))
        .where(_KEYS.c.deleted_ms.is_(None))
        .group_by(_KEYS.c.account_id)
        .subquery()
    )
    query = (
        select(_ACCOUNTS, func.coalesce(counts.c.key_count, 0).label("key_count"))
        .outerjoin(counts, counts.c.account_id == _ACCOUNTS.c.id)
        .order_by(_ACCOUNTS.c.created_ms, _ACCOUNTS.c.id)
    )
    return list(connection.execute(query).all())


def create_account(
    connection: Connection, actor: Actor, *, name: str, balance_micros: int = 0
) -> Row[Any]:
    name = _check_name(name, "account")
    if billing.find_account(connection, name) is not None:
        raise AccountExists(f"an account named {name!r} already exists")
    account = billing.create_account(connection, name=name, balance_micros=balance_micros)
    audit.record(
        connection,
        actor,
        "account.create",
        account.id,
        {"name": name, "balanceMicroUsd": balance_micros},
    )
    return account


def add_credits(
    connection: Connection, actor: Actor, ref: str, *, amount_micros: int, note: str | None = None
) -> Row[Any]:
    """Top up an account; the note lands in the ledger entry. Answers the account after."""
    if note is not None and len(note) > MAX_NOTE:
        raise InvalidFields({"note": f"at most {MAX_NOTE} characters"})
    account = find_account(connection, ref)
    billing.add_credits(connection, account_id=account.id, amount_micros=amount_micros, note=note)
    audit.record(
        connection,
        actor,
        "credits.add",
        account.id,
        {"amountMicroUsd": amount_micros, "note": note},
    )
    return billing.get_account(connection, account.id)


def ledger(connection: Connection, account_id: str, *, limit: int = 50) -> list[Row[Any]]:
    """The account's latest ledger entries, newest first."""
    query = select(_LEDGER).where(_LEDGER.c.account_id == account_id)
    return list(connection.execute(query.order_by(_LEDGER.c.id.desc()).limit(limit)).all())


# ---- keys --------------------------------------------------------------------------------


def create_key(
    connection: Connection, actor: Actor, account_ref: str, options: KeyOptions
) -> tuple[Row[Any], str]:
    """A new key and its secret (shown once; only its hash is stored)."""
    name, allowed = _check_key_options(options)
    account = find_account(connection, account_ref)
    row, secret = keys.create_key(
        connection,
        account_id=account.id,
        name=name,
        spend_limit_cents=options.spend_limit_cents,
        allowed_ips=allowed,
        daily_run_quota=options.daily_run_quota,
        rate_limit=options.rate_limit,
        is_test=options.is_test,
    )
    details = {k: v for k, v in describe_key(row).items() if k not in ("id", "createdAt")}
    audit.record(connection, actor, "key.create", row.id, details)
    return row, secret


def list_keys(connection: Connection, account_id: str | None = None) -> list[Row[Any]]:
    """Keys not deleted, oldest first: one account's, or every account's."""
    query = select(_KEYS).where(_KEYS.c.deleted_ms.is_(None))
    if account_id is not None:
        query = query.where(_KEYS.c.account_id == account_id)
    return list(connection.execute(query.order_by(_KEYS.c.created_ms, _KEYS.c.id)).all())


def get_key(connection: Connection, key_id: str) -> Row[Any]:
    """A key that is not deleted."""
    row = connection.execute(
        select(_KEYS).where(_KEYS.c.id == key_id, _KEYS.c.deleted_ms.is_(None))
    ).first()
    if row is None:
        raise KeyNotFound(f"no key with id {key_id!r}")
    return row


def set_key_enabled(
    connection: Connection, actor: Actor, key_id: str, *, enabled: bool
) -> Row[Any]:
    """Disable or re-enable a key (servers notice within their key cache's second)."""
    get_key(connection, key_id)
    connection.execute(
        update(_KEYS)
        .where(_KEYS.c.id == key_id, _KEYS.c.deleted_ms.is_(None))
        .values(is_enabled=enabled)
    )
    audit.record(connection, actor, "key.enable" if enabled else "key.disable", key_id)
    return get_key(connection, key_id)


def delete_key(connection: Connection, actor: Actor, key_id: str) -> None:
    """Delete a key for good: it never authenticates again and leaves the lists, while the
    row stays for the runs and usage that name it."""
    key = get_key(connection, key_id)
    connection.execute(
        update(_KEYS)
        .where(_KEYS.c.id == key_id, _KEYS.c.deleted_ms.is_(None))
        .values(is_enabled=False, deleted_ms=now_ms())
    )
    audit.record(connection, actor, "key.delete", key_id, {"name": key.name, "prefix": key.prefix})


# ---- what both surfaces show -------------------------------------------------------------


def describe_account(account: Row[Any]) -> dict[str, Any]:
    data = {
        "id": account.id,
        "name": account.name,
        "balanceMicroUsd": account.balance_micros,
        "balanceUsd": account.balance_micros / billing.MICROS_PER_USD,
        "testBalanceMicroUsd": account.test_balance_micros,
        "createdAt": format_timestamp(account.created_ms),
    }
    if "key_count" in account._fields:
        data["keyCount"] = account.key_count
    return data


def describe_key(key: Row[Any]) -> dict[str, Any]:
    return {
        "id": key.id,
        "accountId": key.account_id,
        "name": key.name,
        "prefix": key.prefix,
        "enabled": bool(key.is_enabled),
        "spendLimitCents": key.spend_limit_cents,
        "spentMicroUsd": key.spent_micros,
        "dailyRunQuota": key.daily_run_quota,
        "allowedIps": list(key.allowed_ips or []),
        "rateLimit": key.rate_limit,
        "isTest": bool(key.is_test),
        "createdAt": format_timestamp(key.created_ms),
    }


def describe_ledger_entry(entry: Row[Any]) -> dict[str, Any]:
    return {
        "id": entry.id,
        "kind": entry.kind,
        "book": entry.book,
        "amountMicroUsd": entry.amount_micros,
        "runId": entry.run_id,
        "note": entry.note,
        "at": format_timestamp(entry.created_ms),
    }
