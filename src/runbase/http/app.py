"""`create_app(settings)`: builds the whole server; nothing is built at import time.

The lifespan, in order: migrate the database, open it, load the URL-signing secret, start
the reaper and the in-process workers. At shutdown the workers hand unfinished runs back to
the queue before the database closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp

from runbase import __version__
from runbase.config import Settings
from runbase.dispatch.pools import Pools
from runbase.dispatch.reaping import reap_forever
from runbase.dispatch.signals import RunSignals
from runbase.dispatch.wakeup import WorkSignal
from runbase.http.deps import KeyCache, Services
from runbase.http.errors import install_error_handlers
from runbase.http.hot_routes import HotRoutes
from runbase.http.metrics import Metrics
from runbase.http.middleware import RequestContext
from runbase.http.openapi import install_error_documents
from runbase.http.ratelimit import RateLimiter
from runbase.http.routes import (
    account,
    admin,
    ark_compat,
    files,
    models,
    openai_videos,
    ops,
    playground,
    provider_callbacks,
    run_control,
    run_events,
    runs,
)
from runbase.http.webhook_sender import deliver_webhooks_forever
from runbase.storage.blobs import open_blob_store
from runbase.storage.db import Database
from runbase.storage.migrate import upgrade_database

logger = logging.getLogger(__name__)


class RunbaseApp(FastAPI):
    """FastAPI with runbase's request middleware outermost, outside even the error
    handling, so that every response (a 500 too) carries its request id; and with the hot
    routes found first inside the router (http/hot_routes.py), so that every middleware,
    ours and any added with `add_middleware`, sees every request."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.router.middleware_stack = HotRoutes(self.router.middleware_stack)

    def build_middleware_stack(self) -> ASGIApp:
        stack = super().build_middleware_stack()
        return RequestContext(admin.AdminGuard(stack, self.state.settings), self.state.metrics)


class _ServerObserver:
    """What the in-process workers and gateway tell the server: run changes (to wake
    waiters), engine time, provider latencies and failures, task restarts (for metrics)."""

    def __init__(self, signals: RunSignals, metrics: Metrics) -> None:
        self._signals, self._metrics = signals, metrics

    def run_changed(self, run_id: str) -> None:
        self._signals.notify(run_id)

    def engine_used(self, model: str, backend: str | None, seconds: float) -> None:
        self._metrics.engine_used(model, backend, seconds)

    def provider_submitted(self, provider: str, seconds: float) -> None:
        self._metrics.providers.submitted(provider, seconds)

    def provider_completed(self, provider: str, seconds: float) -> None:
        self._metrics.providers.completed(provider, seconds)

    def provider_failed(self, provider: str, error_class: str) -> None:
        self._metrics.providers.failed(provider, error_class)

    def task_restarted(self, task: str) -> None:
        self._metrics.providers.task_restarted(task)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()
    metrics = Metrics()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        await asyncio.to_thread(upgrade_database, settings.resolved_database_url)
        database = Database(settings.resolved_database_url)
        blobs = open_blob_store(settings)
        signals = RunSignals()
        observer = _ServerObserver(signals, metrics)
        stopping = asyncio.Event()
        work = WorkSignal()
        services = Services(
            settings,
            database,
            blobs,
            RateLimiter(settings.rate_limit, settings.rate_limit_storage_url),
            KeyCache(),
            signals=signals,
            stopping=stopping,
            work=work,
        )
        app.state.services = services
        pools = None
        if settings.workers > 0:
            pools = Pools(
                database=database,
                blobs=blobs,
                settings=settings,
                work=work,
                observer=observer,
                worker_count=settings.workers,
            )
            services.pools, services.workers = pools, pools.workers
            services.worker_tasks = pools.start(stopping)
            tasks = list(services.worker_tasks)
        else:  # API only: the workers are elsewhere; lost runs are still reaped here
            tasks = [asyncio.create_task(reap_forever(database, settings, stopping, observer))]
        tasks.append(asyncio.create_task(deliver_webhooks_forever(services, stopping)))
        tasks += admin.start(app, settings, database, stopping)
        # What start-up built (modules, routes, schemas: ~150k objects) lives as long as the
        # server; frozen, the collector stops walking it, and a full collection under load
        # costs microseconds instead of the ~45 ms pause that set the p99 latency.
        gc.collect()
        gc.freeze()
        try:
            yield
        finally:
            gc.unfreeze()  # collectable again, for a process that goes on (tests)
            stopping.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            if pools is not None:
                await asyncio.to_thread(pools.close)
            await asyncio.to_thread(database.dispose)

    app = RunbaseApp(
        title="runbase",
        version=__version__,
        summary="The Runbase runs API for AI video generation, self-hosted.",
        lifespan=lifespan,
    )
    app.state.metrics = metrics
    app.state.settings = settings
    install_error_handlers(
        app,
        surfaces={
            "/v1/videos": openai_videos.openai_error_response,
            "/api/v3/": ark_compat.ark_error_response,
        },
    )
    for prefix in ("/api/v1", "/v1"):
        app.include_router(runs.router, prefix=prefix)
        for router in (run_control.router, run_events.router, account.router, models.router):
            app.include_router(router, prefix=prefix)
    app.include_router(openai_videos.router)
    app.include_router(ark_compat.router)
    app.include_router(files.router)
    app.include_router(ops.router)
    app.include_router(provider_callbacks.router)
    app.include_router(playground.router)
    admin.install(app, settings)
    install_error_documents(app)

    @app.get("/healthz", include_in_schema=False)
    async def read_health() -> JSONResponse:
        return JSONResponse({"status": "ok"})

    return app
