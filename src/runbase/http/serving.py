"""`runbase serve`'s listeners: the public API, and the admin side's own when configured.

With `RUNBASE_ADMIN_HOST`/`RUNBASE_ADMIN_PORT`, a second uvicorn server in the same
process and event loop serves the same app on the admin address, each request marked as
arriving there (`AdminListener`); the app's `AdminGuard` then answers `/admin` only on the
admin listener and everything else only on the public one. The public server runs the
lifespan (database, workers); the admin one starts after it and stops with it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import uvicorn
from fastapi import FastAPI

from runbase.config import Settings
from runbase.http.routes.admin import AdminListener


def admin_address(settings: Settings, public_port: int) -> tuple[str, int] | None:
    """Where the separate admin listener binds, or None when the admin side shares the
    public listener (or is off). Loopback unless `admin_host` says otherwise."""
    if not settings.admin_listener_is_separate:
        return None
    port = settings.admin_port if settings.admin_port is not None else public_port
    return settings.admin_host or "127.0.0.1", port


def serve(app: FastAPI, settings: Settings, *, host: str, port: int, **options: Any) -> None:
    """Serve until interrupted; `options` are uvicorn.Config's (logging, proxy headers)."""
    public = uvicorn.Server(uvicorn.Config(app, host=host, port=port, **options))
    address = admin_address(settings, port)
    if address is None:
        public.run()
        return
    admin_host, admin_port = address
    admin = uvicorn.Server(
        uvicorn.Config(
            AdminListener(app), host=admin_host, port=admin_port, lifespan="off", **options
        )
    )
    asyncio.run(_serve_both(public, admin))


async def _serve_both(public: uvicorn.Server, admin: uvicorn.Server) -> None:
    public_task = asyncio.create_task(public.serve())
    while not public.started:  # the lifespan first: the admin routes need its services
        if public_task.done():
            await public_task
            return
        await asyncio.sleep(0.05)
    admin_task = asyncio.create_task(admin.serve())
    await asyncio.wait({public_task, admin_task}, return_when=asyncio.FIRST_COMPLETED)
    public.should_exit = admin.should_exit = True
    await asyncio.gather(public_task, admin_task)
