"""`create_app(settings)`: builds the whole server; nothing is built at import time.

The lifespan, in order: migrate the database, open it, load the URL-signing secret, start
the reaper and the in-process workers. At shutdown the workers hand unfinished runs back to
the queue before the database closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from runbase import __version__
from runbase.config import Settings
from runbase.dispatch.worker import Worker, reap_forever
from runbase.http.deps import KeyCache, Services
from runbase.http.errors import install_error_handlers
from runbase.http.ratelimit import RateLimiter
from runbase.http.routes import files, runs
from runbase.storage.blobs import LocalBlobStore, load_or_create_secret
from runbase.storage.db import Database
from runbase.storage.migrate import upgrade_database

logger = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(upgrade_database, settings.resolved_database_url)
        database = Database(settings.resolved_database_url)
        secret = load_or_create_secret(settings.data_dir / "url-signing.key")
        blobs = LocalBlobStore(settings.outputs_dir, secret)
        app.state.services = Services(
            settings, database, blobs, RateLimiter(settings.rate_limit), KeyCache()
        )
        stopping = asyncio.Event()
        workers = [
            Worker(database=database, blobs=blobs, settings=settings)
            for _ in range(settings.workers)
        ]
        tasks = [asyncio.create_task(reap_forever(database, settings, stopping))]
        tasks += [asyncio.create_task(worker.run_forever(stopping)) for worker in workers]
        try:
            yield
        finally:
            stopping.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            await asyncio.to_thread(database.dispose)

    app = FastAPI(
        title="runbase",
        version=__version__,
        summary="The Runbase runs API for AI video generation, self-hosted.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    for prefix in ("/api/v1", "/v1"):
        app.include_router(runs.router, prefix=prefix)
    app.include_router(files.router)

    @app.get("/healthz", include_in_schema=False)
    async def read_health() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return app
