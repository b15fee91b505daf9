"""Prometheus metrics, one registry per app (so that two apps in one process never mix).

    runbase_http_requests_total{method, route, status}      counter
    runbase_http_request_duration_seconds{method, route}    histogram
    runbase_runs{status, model}                             gauge, read from the database
    runbase_queue_depth                                     gauge, pending runs
    runbase_engine_seconds_total{model, backend}            counter, this process's workers
    runbase_provider_*{provider}, runbase_task_restarts_total   http/provider_metrics.py

`route` is the route's template (`/api/v1/runs/{run_id}`), never the raw path, so that
run ids cannot blow up the number of series.
"""

from __future__ import annotations

from typing import Any, cast

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from sqlalchemy import Connection, Table, func, select

from runbase.http.provider_metrics import ProviderMetrics
from runbase.storage.tables import RunRow

_RUNS = cast(Table, RunRow.__table__)
_COUNT_RUNS = select(_RUNS.c.status, _RUNS.c.model, func.count()).group_by(
    _RUNS.c.status, _RUNS.c.model
)
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self._requests = Counter(
            "runbase_http_requests",
            "HTTP requests answered, by route template and status.",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self._latency = Histogram(
            "runbase_http_request_duration_seconds",
            "Time to answer an HTTP request (until the response started streaming).",
            ("method", "route"),
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._runs = Gauge(
            "runbase_runs",
            "Runs in the database, by status and model.",
            ("status", "model"),
            registry=self.registry,
        )
        self._queue_depth = Gauge(
            "runbase_queue_depth", "Runs waiting for a worker.", registry=self.registry
        )
        self._engine_seconds = Counter(
            "runbase_engine_seconds",
            "Time engines in this process spent on runs.",
            ("model", "backend"),
            registry=self.registry,
        )
        self.providers = ProviderMetrics(self.registry)
        # labels() takes a lock and hashes its arguments; a request only needs a dict hit.
        self._request_children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        children = self._request_children.get((method, route, status))
        if children is None:
            children = (
                self._requests.labels(method, route, str(status)),
                self._latency.labels(method, route),
            )
            self._request_children[(method, route, status)] = children
        children[0].inc()
        children[1].observe(seconds)

    def engine_used(self, model: str, backend: str | None, seconds: float) -> None:
        self._engine_seconds.labels(model, backend or "none").inc(seconds)

    def render(self, run_counts: list[tuple[str, str, int]]) -> bytes:
        """The text exposition, with the run gauges set from `count_runs`."""
        self._runs.clear()
        pending = 0
        for status, model, count in run_counts:
            self._runs.labels(status, model).set(count)
            if status == "pending":
                pending += count
        self._queue_depth.set(pending)
        return generate_latest(self.registry)


def count_runs(connection: Connection) -> list[tuple[str, str, int]]:
    """Runs by (status, model)."""
    return [(row[0], row[1], int(row[2])) for row in connection.execute(_COUNT_RUNS)]
