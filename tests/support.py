"""Test helpers: settings on a temporary data directory, operator actions, a live server.

The database is SQLite in the data directory, or, when RUNBASE_TEST_DATABASE_URL names a
PostgreSQL server (`make test-postgres`), a fresh database on it for each data directory:
copied from a migrated template (about 20 ms) and dropped when the test ends.
"""

from __future__ import annotations

import hashlib
import ipaddress
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psutil
import pytest
from PIL import Image
from sqlalchemy import create_engine, make_url, select, text
from sqlalchemy.pool import NullPool

from runbase.config import Settings
from runbase.core import billing, keys
from runbase.core.seedance import MODEL_ID, output_geometry, validate_input
from runbase.engines.base import GenerationRequest
from runbase.storage.db import Database
from runbase.storage.migrate import upgrade_database
from runbase.storage.tables import AccountRow, LedgerEntryRow, RunRow

T = TypeVar("T")
SEEDANCE = "bytedance/seedance-1.5-pro"
S3_BUCKET = "runbase-outputs"  # the bucket that the s3_endpoint fixture creates
TESTS_DIR = Path(__file__).resolve().parent

RAY_LOOPBACK_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": "disabled",
}
"""Ray on 127.0.0.1 only, with no usage stats and no token file in $HOME.

On Linux Ray takes the machine's outside address for its node, its GCS and its workers,
and turns even an explicit `127.0.0.1` (`--node-ip-address`, `_node_ip_address`) into that
address, unless RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER is 0. Ray reads it once, when it is
imported: conftest.py sets these before any test module imports ray, and each Ray process
a test starts inherits them."""


def is_loopback(host: str) -> bool:
    """Whether an address (IPv4, IPv6 or IPv4-mapped IPv6) is on loopback."""
    address = ipaddress.ip_address(host)
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def listeners_off_loopback(pid: int) -> list[str]:
    """TCP sockets listening on anything but loopback, in a process and its descendants."""
    root = psutil.Process(pid)
    found = []
    for process in (root, *root.children(recursive=True)):
        try:
            sockets = process.net_connections(kind="tcp")
            name = process.name()
        except (psutil.NoSuchProcess, psutil.ZombieProcess):
            continue  # gone meanwhile
        found += [
            f"{name} (pid {process.pid}) on {sock.laddr.ip}:{sock.laddr.port}"
            for sock in sockets
            if sock.status == psutil.CONN_LISTEN and not is_loopback(sock.laddr.ip)
        ]
    return found


TEST_DATABASE_URL = os.environ.get("RUNBASE_TEST_DATABASE_URL") or None
# One template per pytest-xdist worker: each migrates its own.
_TEMPLATE = "runbase_template_" + os.environ.get("PYTEST_XDIST_WORKER", "main")
_created_databases: set[str] = set()
_kept_databases: set[str] = set()
_template_ready = False


def database_url_for(data_dir: Path) -> str:
    """The test database of a data directory: the same one every time it is asked for."""
    if TEST_DATABASE_URL is None:
        return f"sqlite:///{data_dir / 'runbase.db'}"
    name = _database_name(data_dir)
    if name not in _created_databases and name not in _kept_databases:
        _create_database(name)
    return make_url(TEST_DATABASE_URL).set(database=name).render_as_string(hide_password=False)


def _database_name(data_dir: Path) -> str:
    return "t_" + hashlib.sha256(str(data_dir.resolve()).encode()).hexdigest()[:20]


@contextmanager
def kept_database(data_dir: Path) -> Iterator[None]:
    """Keep the test database of `data_dir` across tests (for a fixture wider than one test,
    such as a server its tests share), and drop it when the block ends."""
    if TEST_DATABASE_URL is None:
        yield
        return
    database_url_for(data_dir)
    name = _database_name(data_dir)
    _created_databases.discard(name)
    _kept_databases.add(name)
    try:
        yield
    finally:
        _kept_databases.discard(name)
        _admin_execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def database_env(data_dir: Path) -> dict[str, str]:
    """Environment for a `runbase` subprocess on `data_dir`, so that it uses the test database."""
    if TEST_DATABASE_URL is None:
        return {}
    return {"RUNBASE_DATABASE_URL": database_url_for(data_dir)}


def _admin_execute(*statements: str) -> None:
    assert TEST_DATABASE_URL is not None
    engine = create_engine(TEST_DATABASE_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with engine.connect() as connection:
            for statement in statements:
                connection.execute(text(statement))
    finally:
        engine.dispose()


def _create_database(name: str) -> None:
    global _template_ready
    assert TEST_DATABASE_URL is not None
    if not _template_ready:
        # Migrated once per test session; each test's database is a copy of it.
        _admin_execute(
            f"DROP DATABASE IF EXISTS {_TEMPLATE} WITH (FORCE)", f"CREATE DATABASE {_TEMPLATE}"
        )
        template_url = make_url(TEST_DATABASE_URL).set(database=_TEMPLATE)
        upgrade_database(template_url.render_as_string(hide_password=False))
        _template_ready = True
    _admin_execute(f"CREATE DATABASE {name} TEMPLATE {_TEMPLATE}")
    _created_databases.add(name)


def drop_test_databases() -> None:
    """Drop the databases made since the last call (FORCE: a test may leave connections)."""
    if not _created_databases:
        return
    names = sorted(_created_databases)
    _created_databases.clear()
    _admin_execute(*(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)" for name in names))


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": data_dir,
        "database_url": database_url_for(data_dir),
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
        # Watched on the database, asked through the API once it is there: polls of the API
        # would spend the key's rate limit (20 per 10 s by default), and the test's next
        # request would be refused.
        database = Database(self.settings.resolved_database_url)
        status = select(RunRow.__table__.c.status).where(RunRow.__table__.c.id == run_id)
        try:
            with self.client(api_key) as client:
                while True:
                    with database.connect() as connection:
                        seen = connection.execute(status).scalar()
                    if seen in until:
                        answer = client.get(f"/api/v1/runs/{run_id}")
                        if answer.status_code == 429:
                            time.sleep(float(answer.headers.get("retry-after", "1")))
                            continue
                        run: dict[str, Any] = answer.json()
                        if run.get("status") in until:
                            return run
                    if time.monotonic() > deadline:
                        raise AssertionError(f"run {run_id} still {seen} after {timeout}s")
                    time.sleep(0.05)
        finally:
            database.dispose()


class RecordingSink:
    """A real ProgressSink for engine tests: records what the engine reports, and asks it
    to stop once progress reaches `stop_at` (0.0: at once)."""

    def __init__(self, stop_at: float | None = None) -> None:
        self.fractions: list[float] = []
        self.messages: list[str] = []
        self.logs: list[str] = []
        self.stop_at = stop_at
        self.stopped_at: float | None = None  # time.monotonic() when should_stop turned true
        self._lock = threading.Lock()

    def progress(self, fraction: float, message: str = "") -> None:
        with self._lock:
            self.fractions.append(fraction)
            self.messages.append(message)
            if self.stop_at is not None and fraction >= self.stop_at and self.stopped_at is None:
                self.stopped_at = time.monotonic()

    def log(self, message: str) -> None:
        self.logs.append(message)

    def should_stop(self) -> bool:
        with self._lock:
            if self.stop_at == 0.0 and self.stopped_at is None:
                self.stopped_at = time.monotonic()
            return self.stopped_at is not None


def engine_request(
    scratch: Path,
    fields: dict[str, Any],
    *,
    seed: int,
    images: Sequence[Image.Image] = (),
    run_id: str = "run_test",
) -> GenerationRequest:
    """A seedance request as the worker builds it: validated input, contract geometry."""
    scratch.mkdir(parents=True, exist_ok=True)
    validated = validate_input(fields)
    geometry = output_geometry(validated, validated["aspect_ratio"] or "16:9")
    return GenerationRequest(
        run_id=run_id,
        model=MODEL_ID,
        input=validated,
        width=geometry.width,
        height=geometry.height,
        num_frames=geometry.num_frames,
        fps=geometry.fps,
        audio=validated["generate_audio"],
        seed=seed,
        images=tuple(images),
        scratch_dir=scratch,
    )


def start_worker_command(
    command: str, data_dir: Path, env: dict[str, str]
) -> subprocess.Popen[str]:
    """`runbase worker` or `runbase dispatcher` on a data directory, output captured; the
    fixture engines (tests/engine_fixtures.py) on its path."""
    argv = [sys.executable, "-m", "runbase", command, "--data-dir", str(data_dir)]
    path = os.pathsep.join(filter(None, [str(TESTS_DIR), os.environ.get("PYTHONPATH")]))
    environment = {**os.environ, "PYTHONPATH": path, **database_env(data_dir), **env}
    return subprocess.Popen(
        argv, env=environment, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def stop_mid_run(
    server: LiveServer,
    key: str,
    run_id: str,
    process: subprocess.Popen[str],
    signum: int,
    *,
    under_way: Callable[[dict[str, Any]], bool] = lambda run: (run["progress"] or 0) > 0,
) -> str:
    """Once the run is under way in the process (by default: its engine is generating it,
    progress past 0), send `signum`; check that the process exited 0 within 5 s and that
    the run is pending again with its attempt given back. Returns the process's output."""
    deadline = time.monotonic() + 60
    with server.client(key) as client:
        while True:
            response = client.get(f"/api/v1/runs/{run_id}")
            assert response.status_code == 200, response.text
            if under_way(response.json()):
                break
            assert process.poll() is None, process.communicate()[0]
            assert time.monotonic() < deadline, f"run {run_id} never got under way"
            time.sleep(0.05)
    process.send_signal(signum)
    sent = time.monotonic()
    try:
        output, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError(f"still running 30 s after {signal.Signals(signum).name}") from None
    seconds = time.monotonic() - sent
    assert process.returncode == 0, output
    assert seconds < 5, f"took {seconds:.1f} s to stop:\n{output}"
    [row] = server.admin.runs()
    assert (row.status, row.attempts, row.worker_id) == ("pending", 0, None), output
    return output


def fake_resolver(
    monkeypatch: pytest.MonkeyPatch, answers: dict[str, list[list[str]]]
) -> list[str]:
    """Answer getaddrinfo for test names from `answers` (one list per call); log lookups."""
    lookups: list[str] = []
    real_getaddrinfo = socket.getaddrinfo

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host not in answers:
            return real_getaddrinfo(host, port, *args, **kwargs)
        lookups.append(host)
        addresses = answers[host][min(len(lookups), len(answers[host])) - 1]
        result = []
        for address in addresses:
            family = socket.AF_INET6 if ":" in address else socket.AF_INET
            result.append((family, socket.SOCK_STREAM, 6, "", (address, port)))
        return result

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    return lookups
