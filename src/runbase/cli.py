"""The server's commands of `runbase`: the server, a standalone worker, and admin commands.

    runbase serve      [--host] [--port] [--data-dir]
    runbase worker     [--data-dir]
    runbase dispatcher [--data-dir]
    runbase accounts   create NAME [--balance-usd X] | show NAME
    runbase credits    add NAME --usd X
    runbase keys       create --account NAME [...] | list --account NAME | disable ID | enable ID
    runbase admin      token

Admin commands work on the database directly (like `manage.py`), so they need no key and
can run beside a live server. Every one takes `--data-dir` and `--json`.

They need the `server` extra; `runbase.commands` adds them to the client's commands when it
is installed (`pip install 'runbase[server]'`).
"""

from __future__ import annotations

import asyncio
import json
import os
import shlex
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from sqlalchemy import Connection, Row
from sqlalchemy.exc import IntegrityError

from runbase.config import Settings
from runbase.core import admin, billing, keys
from runbase.core.admin_token import load_admin_token
from runbase.core.audit import Actor
from runbase.errors import RunbaseError
from runbase.storage.db import Database
from runbase.storage.migrate import upgrade_database

app = typer.Typer(help="runbase: a self-hostable Runbase runs API server.", no_args_is_help=True)
accounts_app = typer.Typer(help="Manage accounts.", no_args_is_help=True)
credits_app = typer.Typer(help="Add credits to an account.", no_args_is_help=True)
keys_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
admin_app = typer.Typer(help="The admin API and console.", no_args_is_help=True)
app.add_typer(accounts_app, name="accounts")
app.add_typer(credits_app, name="credits")
app.add_typer(keys_app, name="keys")
app.add_typer(admin_app, name="admin")

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


def _cli_actor() -> Actor:
    """Who runs the command, for the audit log: the OS user and host."""
    import pwd
    import socket

    return Actor(f"cli:{pwd.getpwuid(os.getuid()).pw_name}@{socket.gethostname()}")


def _admin(data_dir: Path | None, work: Callable[[Connection], T], *, write: bool = True) -> T:
    """Run one `core.admin` operation in a transaction; its refusals exit 2 with the message."""

    def run(database: Database) -> T:
        with database.transaction() if write else database.connect() as connection:
            return work(connection)

    try:
        return _with_database(_settings(data_dir), run)
    except RunbaseError as exc:
        _fail(exc.message)
        raise  # unreachable: _fail exits


# ---- serve and worker -------------------------------------------------------------------


def ensure_default_account(database: Database, settings: Settings) -> str | None:
    """On first start, create the `default` account and one key; returns the key, once.

    Replicas starting together on a fresh database all try: the unique account name lets
    one win, and the others go on without a key to show.
    """
    try:
        with database.transaction() as connection:
            if billing.find_account(connection, "default") is not None:
                return None
            account = billing.create_account(
                connection,
                name="default",
                balance_micros=billing.usd_to_micros(settings.starting_balance_usd),
            )
            _, secret = keys.create_key(connection, account_id=account.id, name="default")
    except IntegrityError:
        return None  # another replica created it a moment ago
    return secret


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    data_dir: DataDir = None,
) -> None:
    """Run the API server with in-process workers (migrates the database first)."""
    from runbase.http.app import create_app
    from runbase.http.serving import admin_address
    from runbase.http.serving import serve as serve_app
    from runbase.logs import logging_config

    settings = _settings(data_dir)
    _check_engines(settings)
    secret = _with_database(settings, lambda db: ensure_default_account(db, settings))
    typer.echo(_key_notice(secret, settings, data_dir))
    if settings.admin:
        configured = settings.admin_token.get_secret_value() if settings.admin_token else None
        token = load_admin_token(configured, settings.data_dir)
        if token.created:
            typer.echo(
                "The admin token, for the console at /admin and the admin API (shown only "
                f"once; `runbase admin token` prints it again):\n\n    {token.value}\n"
            )
    typer.echo(f"runbase serving on http://{host}:{port} (data in {settings.data_dir})")
    address = admin_address(settings, port)
    if address is not None:
        typer.echo(f"admin console on http://{address[0]}:{address[1]}/admin")
    import uvicorn

    serve_app(
        create_app(settings),
        settings,
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


def _key_notice(secret: str | None, settings: Settings, data_dir: Path | None) -> str:
    """What `serve` says about keys: the new key on first start, else how to make one.

    The commands are spelled as this `runbase` was started (`.venv/bin/runbase` under
    `make serve`), so that they work when pasted into the same shell.
    """
    command = sys.argv[0] if Path(sys.argv[0]).name == "runbase" else "runbase"
    options = f" --data-dir {shlex.quote(str(data_dir))}" if data_dir is not None else ""
    if secret is None:
        return (
            "Account 'default' exists; its keys were shown when they were made. "
            "A new key:\n\n"
            f"    {command} keys create --account default{options}\n"
        )
    return (
        "Created account 'default' with "
        f"${settings.starting_balance_usd:.2f} and this API key (shown only once):\n\n"
        f"    export RUNBASE_API_KEY={secret}\n\n"
        f"Then, in that shell: {command} generate 'A red kite over a beach' -o kite.mp4\n"
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
    from runbase.storage.blobs import open_blob_store

    configure_logging(settings.log_format)
    _check_engines(settings.model_copy(update={"workers": max(1, settings.workers)}))

    async def work(database: Database) -> None:
        blobs = open_blob_store(settings)
        stopping = asyncio.Event()
        _stop_on_signals(stopping)
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
    if settings.executor == "ray":
        from runbase.dispatch.ray_executor import disconnect_ray

        disconnect_ray()


def _stop_on_signals(stopping: asyncio.Event) -> None:
    """SIGINT and SIGTERM set `stopping`, as `serve`'s shutdown does: each worker stops its
    engine, hands its run back to the queue without using up an attempt, closes its engine
    and returns. A second signal cancels whatever is left.

    Why not asyncio.run's own SIGINT handling (issue #19's hang): it cancels the main task,
    and `gather` ends that task as soon as its first child, the reaper, is cancelled.
    asyncio.run then cancels the workers again while they are still cleaning up, and
    closes the loop: in 10 of 20 tries the engine's Ray actor was never killed, a
    hand-back write was answered to a closed loop (the writer thread died on it), and the
    rest was left to Ray's own teardown at interpreter exit. SIGTERM was not handled at
    all: Ray's crash handler printed a stack trace, the process died, and the run stayed
    `processing` until its lease expired, losing an attempt.
    """
    loop = asyncio.get_running_loop()
    main = asyncio.current_task()

    def on_signal() -> None:
        if stopping.is_set() and main is not None:
            main.cancel()
        stopping.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, on_signal)


# ---- accounts and credits: thin callers of core.admin, which the admin API shares ------


@accounts_app.command("create")
def create_account(
    name: str,
    balance_usd: Annotated[float, typer.Option(help="Starting balance in USD.")] = 0.0,
    data_dir: DataDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Create an account."""
    account = _admin(
        data_dir,
        lambda connection: admin.create_account(
            connection,
            _cli_actor(),
            name=name,
            balance_micros=admin.usd_to_micros("--balance-usd", balance_usd, allow_zero=True),
        ),
    )
    _emit(as_json, admin.describe_account(account), f"Created account {name} ({account.id}).")


@accounts_app.command("show")
def show_account(name: str, data_dir: DataDir = None, as_json: JsonFlag = False) -> None:
    """Show an account's balance and keys."""

    def work(connection: Connection) -> tuple[Row[Any], list[Row[Any]]]:
        account = admin.find_account(connection, name)
        return account, admin.list_keys(connection, account.id)

    account, key_rows = _admin(data_dir, work, write=False)
    data = {**admin.describe_account(account), "keys": [admin.describe_key(k) for k in key_rows]}
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
    note: Annotated[str | None, typer.Option(help="Why (kept in the ledger).")] = None,
    data_dir: DataDir = None,
    as_json: JsonFlag = False,
) -> None:
    """Add credits to an account's balance."""
    account = _admin(
        data_dir,
        lambda connection: admin.add_credits(
            connection,
            _cli_actor(),
            name,
            amount_micros=admin.usd_to_micros("--usd", usd, allow_zero=False),
            note=note,
        ),
    )
    _emit(
        as_json,
        admin.describe_account(account),
        f"{account.name}: balance {_usd(account.balance_micros)}",
    )


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
    options = admin.KeyOptions(
        name=name,
        spend_limit_cents=spend_limit_cents,
        allowed_ips=tuple(allow_ip or ()),
        daily_run_quota=daily_run_quota,
        rate_limit=rate_limit,
        is_test=test,
    )
    row, secret = _admin(
        data_dir, lambda connection: admin.create_key(connection, _cli_actor(), account, options)
    )
    _emit(as_json, {**admin.describe_key(row), "key": secret}, secret)


@keys_app.command("list")
def list_keys(
    account: Annotated[str, typer.Option("--account", help="Account name.")],
    data_dir: DataDir = None,
    as_json: JsonFlag = False,
) -> None:
    """List an account's keys (prefixes only; secrets are never stored)."""
    rows = _admin(
        data_dir,
        lambda connection: admin.list_keys(connection, admin.find_account(connection, account).id),
        write=False,
    )
    lines = [
        f"{k.id}  {k.prefix}...  {k.name}  {'enabled' if k.is_enabled else 'disabled'}"
        for k in rows
    ]
    _emit(as_json, {"keys": [admin.describe_key(k) for k in rows]}, "\n".join(lines) or "(no keys)")


def _set_enabled(key_id: str, data_dir: Path | None, as_json: bool, *, is_enabled: bool) -> None:
    _admin(
        data_dir,
        lambda connection: admin.set_key_enabled(
            connection, _cli_actor(), key_id, enabled=is_enabled
        ),
    )
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


# ---- the admin token ----------------------------------------------------------------------


@admin_app.command("token")
def print_admin_token(data_dir: DataDir = None) -> None:
    """Print the admin token of the admin API and console (RUNBASE_ADMIN_TOKEN, else the one
    in the data directory, made now if there is none yet)."""
    settings = _settings(data_dir)
    configured = settings.admin_token.get_secret_value() if settings.admin_token else None
    typer.echo(load_admin_token(configured, settings.data_dir).value)
