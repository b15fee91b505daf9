"""The operator's side: the admin API under `/admin/api/` and the console at `/admin`.

    guard.py     the perimeter (listener, cross-site refusals, anti-framing headers), ASGI
    auth.py      the admin token check; the audit log's actor
    bodies.py    request shapes (pydantic) and the one validation envelope
    accounts.py  accounts, credits, ledgers       keys.py     API keys
    runs.py      the runs browser and cancel      reports.py  usage and the audit log
    console.py   the console's page and static files
    document.py  the admin API's own OpenAPI document
    rollup.py    the background daily usage rollup

Off with `RUNBASE_ADMIN=off`; on its own listener with `RUNBASE_ADMIN_HOST`/`_PORT`.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, FastAPI, Security

from runbase.config import Settings
from runbase.core.admin_token import load_admin_token
from runbase.http.routes.admin import accounts, console, document, keys, reports, runs
from runbase.http.routes.admin.auth import admin_token
from runbase.http.routes.admin.guard import AdminGuard, AdminListener
from runbase.http.routes.admin.rollup import roll_up_usage_forever
from runbase.storage.db import Database

__all__ = ["AdminGuard", "AdminListener", "install", "start"]


def install(app: FastAPI, settings: Settings) -> None:
    """Add the admin routes (when the admin side is on)."""
    if not settings.admin:
        return
    api = APIRouter(prefix="/admin/api", dependencies=[Security(admin_token)])
    for router in (accounts.router, keys.router, runs.router, reports.router):
        api.include_router(router)
    document.serve(api)
    # Not in /openapi.json: the admin API may answer on another listener than that document.
    app.include_router(api, include_in_schema=False)
    app.include_router(console.router, include_in_schema=False)


def start(
    app: FastAPI, settings: Settings, database: Database, stopping: asyncio.Event
) -> list[asyncio.Task[None]]:
    """At start-up: load (or make) the admin token, and start the usage rollup."""
    if not settings.admin:
        return []
    configured = settings.admin_token.get_secret_value() if settings.admin_token else None
    app.state.admin_token = load_admin_token(configured, settings.data_dir)
    return [asyncio.create_task(roll_up_usage_forever(database, stopping))]
