"""Operations: readiness (`/readyz`) and Prometheus metrics (`/metrics`).

`/healthz` (liveness) stays in `app.py`: it answers as long as the process serves HTTP.
Readiness is stricter: the database answers, every in-process worker is running, and the
server is not shutting down, so a load balancer stops sending requests before they fail.
Neither needs an API key; put them behind the network's own access rules.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST
from sqlalchemy import text

from runbase.http.deps import get_services
from runbase.http.metrics import Metrics, count_runs

router = APIRouter(tags=["operations"])


@router.get(
    "/readyz",
    responses={
        200: {"description": "Ready to take runs"},
        503: {"description": "Not ready; `checks` says what is wrong"},
    },
)
async def read_readiness(request: Request) -> JSONResponse:
    """Whether this server can take runs: database reachable, workers alive, not stopping."""
    services = get_services(request)
    checks: dict[str, Any] = {}
    is_ready = not services.stopping.is_set()
    checks["shutting_down"] = not is_ready
    try:
        await services.database.read(lambda connection: connection.execute(text("SELECT 1")))
        checks["database"] = "ok"
    except Exception as exc:
        checks["database"] = f"error: {type(exc).__name__}"
        is_ready = False
    configured = services.settings.workers
    running = sum(1 for task in services.worker_tasks if not task.done())
    checks["workers"] = {"configured": configured, "running": running}
    if running < configured:
        is_ready = False
    return JSONResponse(
        {"status": "ready" if is_ready else "not_ready", "checks": checks},
        status_code=200 if is_ready else 503,
    )


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"}},
)
async def read_metrics(request: Request) -> Response:
    """Prometheus metrics: requests, runs by status and model, queue depth, engine time."""
    services = get_services(request)
    metrics: Metrics = request.app.state.metrics
    # A GROUP BY over every run: off the event loop, or every request waits for it.
    counts = await services.database.scan(count_runs)
    return Response(metrics.render(counts), media_type=CONTENT_TYPE_LATEST)
