"""Test helpers: settings on a temporary data directory, operator actions, a live server."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
from sqlalchemy import select

from runbase.config import Settings
from runbase.core import billing, keys
from runbase.storage.db import Database
from runbase.storage.migrate import upgrade_database
from runbase.storage.tables import AccountRow, LedgerEntryRow, RunRow

T = TypeVar("T")
SEEDANCE = "bytedance/seedance-1.5-pro"


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "engines": ["engine_fixtures:QuickEngine"],
        "workers": 1,
        "poll_interval_seconds": 0.05,
        "lease_seconds": 5.0,
        "allow_private_image_hosts": True,
    }
    values.update(overrides)
    return Settings(**values)


class Admin:
    """Does what an operator does with the admin commands, straight on the database."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        upgrade_database(settings.resolved_database_url)

    def _run(self, work: Callable[[Database], T]) -> T:
        database = Database(self.settings.resolved_database_url)
        try:
            return work(database)
        finally:
            database.dispose()

    def create_account(self, name: str, balance_usd: float = 10.0) -> str:
        def work(db: Database) -> str:
            with db.transaction() as connection:
                account = billing.create_account(
                    connection, name=name, balance_micros=billing.usd_to_micros(balance_usd)
                )
                return str(account.id)

        return self._run(work)

    def create_key(self, account_id: str, **options: Any) -> str:
        def work(db: Database) -> str:
            with db.transaction() as connection:
                _, secret = keys.create_key(connection, account_id=account_id, **options)
                return secret

        return self._run(work)

    def select(self, table: Any, *conditions: Any) -> list[Any]:
        """Rows of a table (an ORM class's table), as read-only Core rows."""

        def work(db: Database) -> list[Any]:
            with db.connect() as connection:
                return list(connection.execute(select(table).where(*conditions)).all())

        return self._run(work)

    def balance(self, account_id: str) -> int:
        [account] = self.select(AccountRow.__table__, AccountRow.id == account_id)
        return int(account.balance_micros)

    def ledger(self, account_id: str) -> list[Any]:
        return self.select(LedgerEntryRow.__table__, LedgerEntryRow.account_id == account_id)

    def runs(self) -> list[Any]:
        return self.select(RunRow.__table__)

    def check_books(self, account_id: str) -> None:
        """The invariants of money: balance = ledger sum >= 0; one charge, at most one refund.

        Both books: the balance, and the test balance (runs of test keys).
        """
        entries = self.ledger(account_id)
        balance = self.balance(account_id)
        assert balance >= 0
        assert balance == sum(entry.amount_micros for entry in entries if entry.book == "live")
        [account] = self.select(AccountRow.__table__, AccountRow.id == account_id)
        test_entries = [entry.amount_micros for entry in entries if entry.book == "test"]
        assert account.test_balance_micros == sum(test_entries) >= 0
        by_run: dict[str, list[str]] = {}
        for entry in entries:
            if entry.run_id:
                by_run.setdefault(entry.run_id, []).append(entry.kind)
        for run in self.runs():
            if run.account_id != account_id:
                continue
            kinds = sorted(by_run.get(run.id, []))
            refunded = run.status in ("failed", "canceled")
            expected = ["charge", "refund"] if refunded else ["charge"]
            assert kinds == expected, (run.id, run.status, kinds)


@dataclass
class LiveServer:
    base_url: str
    settings: Settings
    admin: Admin
    stop: Callable[[], None]
    """Shut the server down gracefully, as on SIGTERM (the fixture also does it at the end)."""

    def client(self, api_key: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30)

    def new_key(self, balance_usd: float = 10.0, name: str | None = None, **options: Any) -> str:
        account_id = self.admin.create_account(
            name or f"account-{secrets.token_hex(4)}", balance_usd
        )
        return self.admin.create_key(account_id, **options)

    def wait_for_run(
        self,
        api_key: str,
        run_id: str,
        *,
        timeout: float = 60,
        until: tuple[str, ...] = ("succeeded", "failed"),
    ) -> dict[str, Any]:
        import time

        deadline = time.monotonic() + timeout
        with self.client(api_key) as client:
            while True:
                run: dict[str, Any] = client.get(f"/api/v1/runs/{run_id}").json()
                if run.get("status") in until:
                    return run
                if time.monotonic() > deadline:
                    raise AssertionError(f"run {run_id} still {run.get('status')} after {timeout}s")
                time.sleep(0.1)
