"""Operations: readiness (`/readyz`) and Prometheus metrics (`/metrics`).

`/healthz` (liveness) stays in `app.py`: it answers as long as the process serves HTTP.
Readiness is stricter: the database answers, every in-process worker is running, some
engine of the route can take runs (a provider that started, a compute engine that has not
failed to start), and the server is not shutting down, so a load balancer stops sending
requests before they fail. `checks.providers` shows each provider: usable, its breaker,
runs in flight and its cap.
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
    pools = services.pools
    running = pools.running_workers() if pools is not None else 0
    checks["workers"] = {"configured": configured, "running": running}
    if any(task.done() for task in services.worker_tasks):  # reaper, workers, gateway
        is_ready = False
    if services.pools is not None:
        services.pools.probe_compute()
        checks.update(services.pools.readiness())
        refusal = services.pools.refusal()
        if refusal is not None:
            checks["engines"] = refusal
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
    gateway = services.pools.gateway if services.pools is not None else None
    if gateway is not None:
        breakers = {name: state.value for name, state in gateway.breaker_states().items()}
        metrics.providers.set_state(gateway.in_flight(), gateway.slots.caps, breakers)
    # A GROUP BY over every run: off the event loop, or every request waits for it.
    counts = await services.database.scan(count_runs)
    return Response(metrics.render(counts), media_type=CONTENT_TYPE_LATEST)
