"""A real second runbase (`runbase serve` in a process of its own on 127.0.0.1) as the
upstream of the `runbase` provider: the quick fixture engine, and the default rate limit of
20 requests per 10 s (runbase.net's), with webhooks allowed to call back to 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from server_process import ServerProcess, free_port
from support import Admin, kept_database, make_settings


@dataclass
class Upstream:
    base_url: str
    admin: Admin
    account_id: str
    api_key: str
    test_key: str
    process: ServerProcess


@contextmanager
def upstream_runbase(data_dir: Path, **env: str) -> Iterator[Upstream]:
    """The upstream for the length of the block (its database too: a module may share it)."""
    with kept_database(data_dir):
        yield from _serve(data_dir, env)


def _serve(data_dir: Path, env: dict[str, str]) -> Iterator[Upstream]:
    admin = Admin(make_settings(data_dir))  # migrates the database the server then uses
    account_id = admin.create_account("gateway", 100.0)
    api_key = admin.create_key(account_id)
    test_key = admin.create_key(account_id, is_test=True)
    environment = {
        "RUNBASE_ENGINES": "engine_fixtures:QuickEngine",
        "RUNBASE_TEST_ENGINE": "engine_fixtures:QuickEngine",
        "RUNBASE_WORKERS": "4",
        "RUNBASE_POLL_INTERVAL_SECONDS": "0.05",
        "RUNBASE_RATE_LIMIT": "20/10seconds",  # the default, as runbase.net's
        "RUNBASE_ALLOW_PRIVATE_WEBHOOK_HOSTS": "true",
        "RUNBASE_WEBHOOK_HTTP_HOSTS": "127.0.0.1",
        "RUNBASE_ACCESS_LOG": "false",
        **env,
    }
    process = ServerProcess(data_dir, free_port(), environment)
    try:
        yield Upstream(process.base_url, admin, account_id, api_key, test_key, process)
    finally:
        process.stop()
