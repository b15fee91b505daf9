"""Money: accounts, the append-only ledger, charges and refunds.

Amounts are integers in micro-USD. Every change of a balance is one guarded UPDATE plus one
ledger entry in the same transaction, so a balance always equals the sum of its entries.
The ledger's unique (run_id, kind) constraint makes a second charge or refund of a run
impossible, whatever the code above it does.

Like all of `core/`, these functions take a SQLAlchemy Core `Connection` inside a
transaction that the caller owns, and never commit.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any, cast

from sqlalchemy import Connection, Row, Table, bindparam, func, insert, select, update

from runbase.core.clock import new_id, now_ms
from runbase.errors import InsufficientBalance
from runbase.storage.prepared import PreparedStatement
from runbase.storage.tables import AccountRow, ApiKeyRow, LedgerEntryRow

MICROS_PER_USD = 1_000_000
MICROS_PER_CENT = 10_000

_ACCOUNTS = cast(Table, AccountRow.__table__)
_KEYS = cast(Table, ApiKeyRow.__table__)
_LEDGER = cast(Table, LedgerEntryRow.__table__)
# Statements of the hot paths are built once: a statement is a pure value, and building it
# anew costs more than running it.
_CHARGE = PreparedStatement(
    update(_ACCOUNTS)
    .where(
        _ACCOUNTS.c.id == bindparam("account_id"), _ACCOUNTS.c.balance_micros >= bindparam("cost")
    )
    .values(balance_micros=_ACCOUNTS.c.balance_micros - bindparam("cost"))
)
_CREDIT = (
    update(_ACCOUNTS)
    .where(_ACCOUNTS.c.id == bindparam("account_id"))
    .values(balance_micros=_ACCOUNTS.c.balance_micros + bindparam("amount"))
)
# The test balance (runs of test keys) has no floor: it is topped up before it could run out.
_CHARGE_TEST = PreparedStatement(
    update(_ACCOUNTS)
    .where(_ACCOUNTS.c.id == bindparam("account_id"))
    .values(test_balance_micros=_ACCOUNTS.c.test_balance_micros - bindparam("cost"))
)
_CREDIT_TEST = (
    update(_ACCOUNTS)
    .where(_ACCOUNTS.c.id == bindparam("account_id"))
    .values(test_balance_micros=_ACCOUNTS.c.test_balance_micros + bindparam("amount"))
)
_TOP_UP_TEST = PreparedStatement(
    update(_ACCOUNTS)
    .where(
        _ACCOUNTS.c.id == bindparam("account_id"),
        _ACCOUNTS.c.test_balance_micros < bindparam("cost"),
    )
    .values(test_balance_micros=_ACCOUNTS.c.test_balance_micros + bindparam("amount"))
)
TEST_TOP_UP_MICROS = 1000 * MICROS_PER_USD
_UNSPEND_ON_KEY = (
    update(_KEYS)
    .where(_KEYS.c.id == bindparam("key_id"))
    .values(spent_micros=_KEYS.c.spent_micros - bindparam("amount"))
)
_INSERT_ENTRY = PreparedStatement(insert(_LEDGER))


class Book(StrEnum):
    """Which balance an entry moves: real money, or the test balance of test keys."""

    LIVE = "live"
    TEST = "test"


class EntryKind(StrEnum):
    CHARGE = "charge"  # a run was created (negative amount)
    REFUND = "refund"  # a run failed (positive amount, equal to its charge)
    TOP_UP = "top_up"  # credits added by an operator


def usd_to_micros(usd: float) -> int:
    return round(usd * MICROS_PER_USD)


def create_account(connection: Connection, *, name: str, balance_micros: int) -> Row[Any]:
    account_id = new_id("acct")
    connection.execute(
        insert(_ACCOUNTS).values(id=account_id, name=name, balance_micros=0, created_ms=now_ms())
    )
    if balance_micros:
        add_credits(connection, account_id=account_id, amount_micros=balance_micros)
    account = connection.execute(select(_ACCOUNTS).where(_ACCOUNTS.c.id == account_id)).one()
    return account


def get_account(connection: Connection, account_id: str) -> Row[Any]:
    return connection.execute(select(_ACCOUNTS).where(_ACCOUNTS.c.id == account_id)).one()


def find_account(connection: Connection, name: str) -> Row[Any] | None:
    return connection.execute(select(_ACCOUNTS).where(_ACCOUNTS.c.name == name)).first()


def add_credits(
    connection: Connection, *, account_id: str, amount_micros: int, note: str | None = None
) -> None:
    """Top up the balance; `note` (why) is kept on the ledger entry."""
    if amount_micros <= 0:
        raise ValueError("credits must be a positive amount")
    connection.execute(_CREDIT, {"account_id": account_id, "amount": amount_micros})
    _append(connection, account_id, None, EntryKind.TOP_UP, amount_micros, note=note)


def charge_run(
    connection: Connection, *, account_id: str, run_id: str, cost: int, book: Book = Book.LIVE
) -> None:
    """Take a run's cost from the balance, refusing (402) rather than going below zero.

    On the test book the test balance is topped up first when it is short, so it never
    runs out, and its entries still sum to it.
    """
    if book is Book.TEST:
        amount = max(TEST_TOP_UP_MICROS, cost)
        params = {"account_id": account_id, "cost": cost, "amount": amount}
        if _TOP_UP_TEST.execute(connection, params).rowcount:
            _append(connection, account_id, None, EntryKind.TOP_UP, amount, book)
        _CHARGE_TEST.execute(connection, {"account_id": account_id, "cost": cost})
    else:
        result = _CHARGE.execute(connection, {"account_id": account_id, "cost": cost})
        if result.rowcount == 0:
            raise InsufficientBalance(
                f"this run costs {cost} micro-USD, more than the account's balance"
            )
    _append(connection, account_id, run_id, EntryKind.CHARGE, -cost, book)


def refund_run(
    connection: Connection,
    *,
    run_id: str,
    account_id: str,
    key_id: str,
    cost: int,
    book: Book = Book.LIVE,
) -> None:
    """Return a failed run's full cost to the account and to its key's spend."""
    # First, so that the unique constraint stops a second refund before anything moves.
    _append(connection, account_id, run_id, EntryKind.REFUND, cost, book)
    if book is Book.TEST:  # test runs never counted towards the key's spend
        connection.execute(_CREDIT_TEST, {"account_id": account_id, "amount": cost})
        return
    connection.execute(_CREDIT, {"account_id": account_id, "amount": cost})
    connection.execute(_UNSPEND_ON_KEY, {"key_id": key_id, "amount": cost})


def ledger_total(connection: Connection, account_id: str, book: Book = Book.LIVE) -> int:
    total = connection.execute(
        select(func.coalesce(func.sum(_LEDGER.c.amount_micros), 0)).where(
            _LEDGER.c.account_id == account_id, _LEDGER.c.book == book.value
        )
    ).scalar_one()
    return int(total)


def _append(
    connection: Connection,
    account_id: str,
    run_id: str | None,
    kind: EntryKind,
    amount: int,
    book: Book = Book.LIVE,
    note: str | None = None,
) -> None:
    entry = {
        "account_id": account_id,
        "run_id": run_id,
        "kind": kind.value,
        "amount_micros": amount,
        "created_ms": now_ms(),
        "book": book.value,
    }
    if note is not None:  # only top-ups have one: charges keep their compiled statement
        entry["note"] = note
    _INSERT_ENTRY.execute(connection, entry)
