"""Prometheus metrics of the provider gateway and of supervised tasks, per provider:

runbase_provider_in_flight{provider}                  gauge, runs at the provider now
runbase_provider_max_in_flight{provider}              gauge, its cap
runbase_provider_breaker_state{provider}              gauge: 0 closed, 1 half open, 2 open
runbase_provider_submit_seconds{provider}             histogram: submit until accepted
runbase_provider_completion_seconds{provider}         histogram: attempt begun until
                                                      the video is stored
runbase_provider_failures_total{provider, class}      counter, by failure class
                                                      (not_accepted, task_failed, ...)
runbase_task_restarts_total{task}                     counter: supervised loops that
                                                      died and were started again
"""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_BREAKER_VALUES = {"closed": 0, "half_open": 1, "open": 2}
_SUBMIT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
_COMPLETION_BUCKETS = (5, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600)


class ProviderMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self._in_flight = Gauge(
            "runbase_provider_in_flight",
            "Runs in flight at each provider from this process.",
            ("provider",),
            registry=registry,
        )
        self._max_in_flight = Gauge(
            "runbase_provider_max_in_flight",
            "The cap on runs in flight at each provider from this process.",
            ("provider",),
            registry=registry,
        )
        self._breaker = Gauge(
            "runbase_provider_breaker_state",
            "Each provider's circuit breaker: 0 closed, 1 half open (probing), 2 open.",
            ("provider",),
            registry=registry,
        )
        self._submit = Histogram(
            "runbase_provider_submit_seconds",
            "Time from sending a run to a provider until it accepted the task.",
            ("provider",),
            buckets=_SUBMIT_BUCKETS,
            registry=registry,
        )
        self._completion = Histogram(
            "runbase_provider_completion_seconds",
            "Time from an attempt's start until its video was stored.",
            ("provider",),
            buckets=_COMPLETION_BUCKETS,
            registry=registry,
        )
        self._failures = Counter(
            "runbase_provider_failures",
            "Attempts at a provider that ended without a video, by failure class.",
            ("provider", "class"),
            registry=registry,
        )
        self._restarts = Counter(
            "runbase_task_restarts",
            "Supervised loops (workers, gateway, reaper) that died and were restarted.",
            ("task",),
            registry=registry,
        )

    def submitted(self, provider: str, seconds: float) -> None:
        self._submit.labels(provider).observe(seconds)

    def completed(self, provider: str, seconds: float) -> None:
        self._completion.labels(provider).observe(seconds)

    def failed(self, provider: str, error_class: str) -> None:
        self._failures.labels(provider, error_class).inc()

    def task_restarted(self, task: str) -> None:
        self._restarts.labels(task).inc()

    def set_state(
        self,
        in_flight: Mapping[str, int],
        caps: Mapping[str, int],
        breakers: Mapping[str, str],
    ) -> None:
        """The gauges, as the gateway stands now (set before each scrape)."""
        for provider, count in in_flight.items():
            self._in_flight.labels(provider).set(count)
            self._max_in_flight.labels(provider).set(caps[provider])
            self._breaker.labels(provider).set(_BREAKER_VALUES.get(breakers[provider], 2))
