"""Money: accounts, the append-only ledger, charges and refunds.

Amounts are integers in micro-USD. Every change of a balance is one guarded UPDATE plus one
ledger entry in the same transaction, so a balance always equals the sum of its entries.
The ledger's unique (run_id, kind) constraint makes a second charge or refund of a run
impossible, whatever the code above it does.
"""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.orm import Session

from runbase.core.clock import new_id, now_ms
from runbase.errors import InsufficientBalance
from runbase.storage.tables import AccountRow, ApiKeyRow, LedgerEntryRow, RunRow

MICROS_PER_USD = 1_000_000
MICROS_PER_CENT = 10_000


class EntryKind(StrEnum):
    CHARGE = "charge"  # a run was created (negative amount)
    REFUND = "refund"  # a run failed (positive amount, equal to its charge)
    TOP_UP = "top_up"  # credits added by an operator


def usd_to_micros(usd: float) -> int:
    return round(usd * MICROS_PER_USD)


def create_account(session: Session, *, name: str, balance_micros: int) -> AccountRow:
    account = AccountRow(id=new_id("acct"), name=name, balance_micros=0, created_ms=now_ms())
    session.add(account)
    session.flush()
    if balance_micros:
        add_credits(session, account_id=account.id, amount_micros=balance_micros)
    return account


def find_account(session: Session, name: str) -> AccountRow | None:
    return session.scalar(select(AccountRow).where(AccountRow.name == name))


def add_credits(session: Session, *, account_id: str, amount_micros: int) -> None:
    if amount_micros <= 0:
        raise ValueError("credits must be a positive amount")
    session.execute(
        update(AccountRow)
        .where(AccountRow.id == account_id)
        .values(balance_micros=AccountRow.balance_micros + amount_micros)
    )
    _append(session, account_id, None, EntryKind.TOP_UP, amount_micros)


_ACCOUNTS = AccountRow.__table__
_CHARGE = (
    update(_ACCOUNTS)
    .where(
        _ACCOUNTS.c.id == bindparam("account_id"), _ACCOUNTS.c.balance_micros >= bindparam("cost")
    )
    .values(balance_micros=_ACCOUNTS.c.balance_micros - bindparam("cost"))
)
_INSERT_ENTRY = insert(LedgerEntryRow.__table__)


def charge_run(session: Session, *, account_id: str, run_id: str, cost: int) -> None:
    """Take a run's cost from the balance, refusing (402) rather than going below zero."""
    connection = session.connection()
    result = connection.execute(_CHARGE, {"account_id": account_id, "cost": cost})
    if result.rowcount == 0:
        raise InsufficientBalance(
            f"this run costs {cost} micro-USD, more than the account's balance"
        )
    connection.execute(
        _INSERT_ENTRY,
        {
            "account_id": account_id,
            "run_id": run_id,
            "kind": EntryKind.CHARGE.value,
            "amount_micros": -cost,
            "created_ms": now_ms(),
        },
    )


def refund_run(session: Session, run: RunRow) -> None:
    """Return a failed run's full cost to the account and to its key's spend."""
    _append(session, run.account_id, run.id, EntryKind.REFUND, run.cost_micros)
    session.flush()  # the unique constraint stops a second refund here
    session.execute(
        update(AccountRow)
        .where(AccountRow.id == run.account_id)
        .values(balance_micros=AccountRow.balance_micros + run.cost_micros)
    )
    session.execute(
        update(ApiKeyRow)
        .where(ApiKeyRow.id == run.key_id)
        .values(spent_micros=ApiKeyRow.spent_micros - run.cost_micros)
    )


def ledger_total(session: Session, account_id: str) -> int:
    total = session.scalar(
        select(func.coalesce(func.sum(LedgerEntryRow.amount_micros), 0)).where(
            LedgerEntryRow.account_id == account_id
        )
    )
    return int(total or 0)


def _append(
    session: Session, account_id: str, run_id: str | None, kind: EntryKind, amount: int
) -> None:
    session.add(
        LedgerEntryRow(
            account_id=account_id,
            run_id=run_id,
            kind=kind.value,
            amount_micros=amount,
            created_ms=now_ms(),
        )
    )
