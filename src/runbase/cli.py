"""The `runbase` command: the server, a standalone worker, and admin commands.

    runbase serve      [--host] [--port] [--data-dir]
    runbase worker     [--data-dir]
    runbase dispatcher [--data-dir]
    runbase accounts   create NAME [--balance-usd X] | show NAME
    runbase credits    add NAME --usd X
    runbase keys       create --account NAME [...] | list --account NAME | disable ID | enable ID

Admin commands work on the database directly (like `manage.py`), so they need no key and
can run beside a live server. Every one takes `--data-dir` and `--json`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from sqlalchemy import Connection, Row, select

from runbase.client.cli import generate, runs_app
from runbase.config import Settings
from runbase.core import billing, keys
from runbase.core.clock import format_timestamp
from runbase.storage.db import Database
from runbase.storage.migrate import upgrade_database
from runbase.storage.tables import ApiKeyRow

app = typer.Typer(help="runbase: a self-hostable Runbase runs API server.", no_args_is_help=True)
accounts_app = typer.Typer(help="Manage accounts.", no_args_is_help=True)
credits_app = typer.Typer(help="Add credits to an account.", no_args_is_help=True)
keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
app.add_typer(accounts_app, name="accounts")
app.add_typer(credits_app, name="credits")
app.add_typer(keys_app, name="keys")
app.add_typer(runs_app, name="runs")
app.command("generate")(generate)

DataDir = Annotated[
    Path | None,
    typer.Option(
        "--data-dir", help="Data directory [env: RUNBASE_DATA_DIR; default ./runbase-data]"
    ),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON.")]
T = TypeVar("T")


def _settings(data_dir: Path | None) -> Settings:
    return Settings(data_dir=data_dir) if data_dir is not None else Settings()


def _with_database(settings: Settings, work: Callable[[Database], T]) -> T:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade_database(settings.resolved_database_url)
    database = Database(settings.resolved_database_url)
    try:
        return work(database)
    finally:
        database.dispose()


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _emit(as_json: bool, data: dict[str, Any], text: str) -> None:
    typer.echo(json.dumps(data, indent=2) if as_json else text)


def _usd(micros: int) -> str:
    return f"${micros / billing.MICROS_PER_USD:,.6f}".rstrip("0").rstrip(".")


def _account_data(account: Row[Any]) -> dict[str, Any]:
    return {
        "id": account.id,
        "name": account.name,
        "balanceMicroUsd": account.balance_micros,
        "balanceUsd": account.balance_micros / billing.MICROS_PER_USD,
        "createdAt": format_timestamp(account.created_ms),
    }


def _key_data(key: Row[Any]) -> dict[str, Any]:
    return {
        "id": key.id,
        "name": key.name,
        "prefix": key.prefix,
        "enabled": key.is_enabled,
        "spendLimitCents": key.spend_limit_cents,
        "spentMicroUsd": key.spent_micros,
        "dailyRunQuota": key.daily_run_quota,
        "allowedIps": key.allowed_ips,
        "rateLimit": key.rate_limit,
        "isTest": bool(key.is_test),
        "createdAt": format_timestamp(key.created_ms),
    }


def _require_account(database: Database, name: str) -> Row[Any]:
    with database.connect() as connection:
        account = billing.find_account(connection, name)
    if account is None:
        _fail(f"no account named {name!r}")
    assert account is not None
    return account


def _keys_of(connection: Connection, account_id: str) -> list[Row[Any]]:
    keys_table = ApiKeyRow.__table__
    query = select(keys_table).where(keys_table.c.account_id == account_id)
    return list(connection.execute(query.order_by(keys_table.c.created_ms)).all())


# ---- serve and worker -------------------------------------------------------------------


def ensure_default_account(database: Database, settings: Settings) -> str | None:
    """On first start, create the `default` account and one key; returns the key, once."""
    with database.transaction() as connection:
        if billing.find_account(connection, "default") is not None:
            return None
        account = billing.create_account(
            connection,
            name="default",
            balance_micros=billing.usd_to_micros(settings.starting_balance_usd),
        )
        _, secret = keys.create_key(connection, account_id=account.id, name="default")
    return secret


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    data_dir: DataDir = None,
) -> None:
    """Run the API server with in-process workers (migrates the database first)."""
    import uvicorn

    from runbase.http.app import create_app
    from runbase.logs import logging_config

    settings = _settings(data_dir)
    _check_engines(settings)
    secret = _with_database(settings, lambda db: ensure_default_account(db, settings))
    if secret is not None:
        typer.echo(
            "Created account 'default' with "
            f"${settings.starting_balance_usd:.2f} and this API key (shown only once):\n\n"
            f"    {secret}\n\n"
            f"    export RUNBASE_API_KEY={secret}\n"
        )
    typer.echo(f"runbase serving on http://{host}:{port} (data in {settings.data_dir})")
    uvicorn.run(
        create_app(settings),
        host=host,
        port=port,
        log_level="info",
        log_config=(
            logging_config("json")
            if settings.log_format == "json"
            else uvicorn.config.LOGGING_CONFIG
        ),
        access_log=settings.access_log,
        # runbase decides whom to believe (Settings.trusted_proxies); uvicorn's own proxy
        # handling would trust X-Forwarded-For from 127.0.0.1 and defeat IP allowlists.
        proxy_headers=False,
    )


@app.command()
def worker(data_dir: DataDir = None) -> None:
    """Run workers without the HTTP API (beside a `serve` with RUNBASE_WORKERS=0)."""
    _run_workers(_settings(data_dir))


@app.command()
def dispatcher(data_dir: DataDir = None) -> None:
    """Hand runs to engine actors on a Ray cluster (RUNBASE_RAY_ADDRESS), without the HTTP
    API: one actor per worker (RUNBASE_WORKERS)."""
    _run_workers(_settings(data_dir).model_copy(update={"executor": "ray"}))


def _check_engines(settings: Settings) -> None:
    """Fail fast: refuse to start when no engine of RUNBASE_ENGINES can start."""
    from runbase.dispatch.routing import check_engines, describe_problems

    problems = check_engines(settings)
    if settings.workers > 0 and settings.engines and all(problems.values()):
        _fail("no engine of RUNBASE_ENGINES can start: " + describe_problems(problems))


def _run_workers(settings: Settings) -> None:
    from runbase.dispatch.pools import Pools, QuietObserver
    from runbase.dispatch.wakeup import WorkSignal
    from runbase.logs import configure_logging
    from runbase.storage.s3 import open_blob_store

    configure_logging(settings.log_format)
    _check_engines(settings.model_copy(update={"workers": max(1, settings.workers)}))

    async def work(database: Database) -> None:
        blobs = open_blob_store(settings)
        stopping = asyncio.Event()
        pools = Pools(
            database=database,
            blobs=blobs,
            settings=settings,
            work=WorkSignal(),
            observer=QuietObserver(),
            worker_count=max(1, settings.workers),
        )
        try:
            await asyncio.gather(*pools.start(stopping))
        finally:
            pools.close()

    _with_database(settings, lambda database: asyncio.run(work(database)))


# ---- accounts and credits -------------------------------------------------------------


@accounts_app.command("create")
def create_account(
    name: str,
    balance_usd: Annotated[float, typer.Option(help="Starting balance in USD.")] = 0.0,
    data_dir: DataDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Create an account."""

    def work(database: Database) -> Row[Any]:
        with database.transaction() as connection:
            if billing.find_account(connection, name) is not None:
                _fail(f"an account named {name!r} already exists")
            return billing.create_account(
                connection, name=name, balance_micros=billing.usd_to_micros(balance_usd)
            )

    if balance_usd < 0:
        _fail("--balance-usd cannot be negative")
    account = _with_database(_settings(data_dir), work)
    _emit(as_json, _account_data(account), f"Created account {name} ({account.id}).")


@accounts_app.command("show")
def show_account(name: str, data_dir: DataDir = None, as_json: JsonFlag = False) -> None:
    """Show an account's balance and keys."""

    def work(database: Database) -> tuple[Row[Any], list[Row[Any]]]:
        account = _require_account(database, name)
        with database.connect() as connection:
            return account, _keys_of(connection, account.id)

    account, key_rows = _with_database(_settings(data_dir), work)
    data = {**_account_data(account), "keys": [_key_data(k) for k in key_rows]}
    _emit(
        as_json,
        data,
        f"{account.name} ({account.id}): balance {_usd(account.balance_micros)}, "
        f"{len(key_rows)} key(s)",
    )


@credits_app.command("add")
def add_credits(
    name: str,
    usd: Annotated[float, typer.Option("--usd", help="Amount to add, in USD.")],
    data_dir: DataDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Add credits to an account's balance."""
    if usd <= 0:
        _fail("--usd must be positive")

    def work(database: Database) -> Row[Any]:
        account = _require_account(database, name)
        with database.transaction() as connection:
            billing.add_credits(
                connection, account_id=account.id, amount_micros=billing.usd_to_micros(usd)
            )
        return _require_account(database, name)

    account = _with_database(_settings(data_dir), work)
    _emit(as_json, _account_data(account), f"{name}: balance {_usd(account.balance_micros)}")


# ---- keys -------------------------------------------------------------------------------


@keys_app.command("create")
def create_key(
    account: Annotated[str, typer.Option("--account", help="Account name.")],
    name: Annotated[str, typer.Option("--name", help="A label for the key.")] = "default",
    spend_limit_cents: Annotated[
        int | None, typer.Option(help="Lifetime spend limit in cents.")
    ] = None,
    allow_ip: Annotated[
        list[str] | None, typer.Option("--allow-ip", help="Allowed IP or CIDR (up to 10).")
    ] = None,
    daily_run_quota: Annotated[int | None, typer.Option(help="Runs per rolling 24 h.")] = None,
    rate_limit: Annotated[
        str | None, typer.Option(help="Override the rate limit, e.g. '100/second'.")
    ] = None,
    test: Annotated[
        bool,
        typer.Option(
            "--test", help="A test key (sk-test-...): preview engine, test balance, no charge."
        ),
    ] = False,
    data_dir: DataDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Create an API key and print it (it is shown only this once)."""
    try:
        allowed = keys.normalize_allowlist(allow_ip or [])
        if rate_limit is not None:
            from limits import parse

            parse(rate_limit)
    except ValueError as exc:
        _fail(str(exc))
    if spend_limit_cents is not None and spend_limit_cents < 0:
        _fail("--spend-limit-cents cannot be negative")

    def work(database: Database) -> tuple[Row[Any], str]:
        owner = _require_account(database, account)
        with database.transaction() as connection:
            row, secret = keys.create_key(
                connection,
                account_id=owner.id,
                name=name,
                spend_limit_cents=spend_limit_cents,
                allowed_ips=allowed,
                daily_run_quota=daily_run_quota,
                rate_limit=rate_limit,
                is_test=test,
            )
        return row, secret

    row, secret = _with_database(_settings(data_dir), work)
    _emit(as_json, {**_key_data(row), "key": secret}, secret)


@keys_app.command("list")
def list_keys(
    account: Annotated[str, typer.Option("--account", help="Account name.")],
    data_dir: DataDir = None,
    as_json: JsonFlag = False,
) -> None:
    """List an account's keys (prefixes only; secrets are never stored)."""

    def work(database: Database) -> list[Row[Any]]:
        owner = _require_account(database, account)
        with database.connect() as connection:
            return _keys_of(connection, owner.id)

    rows = _with_database(_settings(data_dir), work)
    lines = [
        f"{k.id}  {k.prefix}...  {k.name}  {'enabled' if k.is_enabled else 'disabled'}"
        for k in rows
    ]
    _emit(as_json, {"keys": [_key_data(k) for k in rows]}, "\n".join(lines) or "(no keys)")


def _set_enabled(key_id: str, data_dir: Path | None, as_json: bool, *, is_enabled: bool) -> None:
    def work(database: Database) -> bool:
        with database.transaction() as connection:
            return keys.set_key_enabled(connection, key_id, is_enabled=is_enabled)

    if not _with_database(_settings(data_dir), work):
        _fail(f"no key with id {key_id!r}")
    state = "enabled" if is_enabled else "disabled"
    _emit(as_json, {"id": key_id, "enabled": is_enabled}, f"Key {key_id} {state}.")


@keys_app.command("disable")
def disable_key(key_id: str, data_dir: DataDir = None, as_json: JsonFlag = False) -> None:
    """Disable a key: every request with it gets 401 invalid_api_key until re-enabled."""
    _set_enabled(key_id, data_dir, as_json, is_enabled=False)


@keys_app.command("enable")
def enable_key(key_id: str, data_dir: DataDir = None, as_json: JsonFlag = False) -> None:
    """Re-enable a disabled key."""
    _set_enabled(key_id, data_dir, as_json, is_enabled=True)


def main() -> None:
    app()
