"""Routing and failover per run (README "Routing"), through a live runbase and fake
ModelArks that count every create: each rule of the route, with the run's money checked.

Providers: `ark` (fake A), `provider_fixtures:ArkB` (fake B), `provider_fixtures:ArkC`
(fake C): the ModelArk provider under three names, each on a fake of its own.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from fakes.modelark import FakeModelArk
from provider_routes import ARK_KEY, attempts, check_money, create
from support import SEEDANCE, LiveServer

B = "provider_fixtures:ArkB"
C = "provider_fixtures:ArkC"


@pytest.fixture
def fakes(
    start_ark: Callable[..., FakeModelArk], monkeypatch: pytest.MonkeyPatch
) -> dict[str, FakeModelArk]:
    """Three fake ModelArks: "ark", "ark-b", "ark-c" (sharing one cache of videos)."""
    found: dict[str, FakeModelArk] = {}
    for name, env in (
        ("ark", None),
        ("ark-b", "RUNBASE_TEST_ARK_B_BASE_URL"),
        ("ark-c", "RUNBASE_TEST_ARK_C_BASE_URL"),
    ):
        found[name] = start_ark()
        if env is not None:
            monkeypatch.setenv(env, found[name].base_url + "/api/v3")
    return found


def start(
    start_server: Callable[..., LiveServer],
    fakes: dict[str, FakeModelArk],
    engines: list[str],
    **overrides: Any,
) -> LiveServer:
    values: dict[str, Any] = {
        "engines": engines,
        "ark_base_url": fakes["ark"].base_url + "/api/v3",
        "ark_api_key": ARK_KEY,
        "ark_allow_private_hosts": True,
        "ark_poll_interval_seconds": 0.05,
        "ark_max_poll_interval_seconds": 0.2,
        "ark_submit_retry_seconds": 0.3,
        "rate_limit": "1000/10seconds",
    }
    values.update(overrides)
    return start_server(**values)


@pytest.mark.parametrize(
    ("refusal", "detail"),
    [
        ((503, "ServiceUnavailable"), "HTTP 503"),
        ((429, "RequestBurstTooFast"), "HTTP 429"),
        ((401, "AuthenticationError"), "credentials"),
        ((403, "AccountOverdueError"), "AccountOverdueError"),
        (None, "ConnectError"),  # the provider's host refuses connections
    ],
)
def test_a_submit_refused_by_the_provider_moves_to_the_next_at_once(
    start_server: Callable[..., LiveServer],
    fakes: dict[str, FakeModelArk],
    refusal: tuple[int, str] | None,
    detail: str,
) -> None:
    if refusal is None:
        server = start(start_server, fakes, ["ark", B], ark_base_url="http://127.0.0.1:9/api/v3")
    else:
        fakes["ark"].refuse_creates(*refusal)
        server = start(start_server, fakes, ["ark", B])
    key = server.new_key()
    run_id = create(server, key)
    run = server.wait_for_run(key, run_id)
    assert run["status"] == "succeeded", run
    assert run["backend"] == "ark-b"
    assert fakes["ark"].creates == [] and len(fakes["ark-b"].creates) == 1
    first, second = attempts(server, run_id)
    assert (first.provider, first.state, first.error_class) == ("ark", "failed", "not_accepted")
    assert detail in first.error_message
    assert first.cost_micros == 0 and first.task_id is None
    assert (second.provider, second.state) == ("ark-b", "succeeded")
    assert second.cost_micros > 0 and second.task_id is not None
    assert any("trying the next provider" in line for line in run["logs"]), run["logs"]
    assert any(line.startswith("ModelArk B: accepted as task") for line in run["logs"])
    check_money(server, run_id, refunded=False)


def test_a_task_lost_after_acceptance_is_retried_once_on_the_next_provider(
    start_server: Callable[..., LiveServer], fakes: dict[str, FakeModelArk]
) -> None:
    fakes["ark"].fail_next("InternalServiceError", "The service encountered an error.")
    server = start(start_server, fakes, ["ark", B, C])
    key = server.new_key()
    run_id = create(server, key)
    run = server.wait_for_run(key, run_id)
    assert run["status"] == "succeeded", run
    assert run["backend"] == "ark-b"
    assert [len(fakes[n].creates) for n in ("ark", "ark-b", "ark-c")] == [1, 1, 0]
    first, second = attempts(server, run_id)
    assert (first.state, first.error_class) == ("failed", "task_failed")
    assert first.task_id is not None and first.submitted_ms is not None
    assert first.cost_micros == 0  # ModelArk bills no failed task
    assert second.state == "succeeded" and second.cost_micros > 0
    check_money(server, run_id, refunded=False)


def test_a_second_lost_task_ends_the_run_refunded(
    start_server: Callable[..., LiveServer], fakes: dict[str, FakeModelArk]
) -> None:
    fakes["ark"].fail_next("InternalServiceError", "The service encountered an error.")
    fakes["ark-b"].fail_next("InternalServiceError", "The service encountered an error.")
    server = start(start_server, fakes, ["ark", B, C])
    key = server.new_key()
    run_id = create(server, key)
    run = server.wait_for_run(key, run_id)
    assert run["status"] == "failed", run
    assert run["error"]["code"] == "upstream_error"
    assert "ModelArk:" in run["error"]["message"] and "ModelArk B:" in run["error"]["message"]
    assert [len(fakes[n].creates) for n in ("ark", "ark-b", "ark-c")] == [1, 1, 0]
    check_money(server, run_id, refunded=True)


@pytest.mark.parametrize("where", ["input", "output"])
def test_a_content_refusal_is_the_users_and_goes_nowhere_else(
    start_server: Callable[..., LiveServer], fakes: dict[str, FakeModelArk], where: str
) -> None:
    if where == "input":
        fakes["ark"].sensitive_words.add("forbidden")
    else:
        fakes["ark"].fail_next(
            "OutputVideoSensitiveContentDetected", "The output may contain sensitive content."
        )
    server = start(start_server, fakes, ["ark", B])
    key = server.new_key()
    run_id = create(server, key, prompt="something forbidden")
    run = server.wait_for_run(key, run_id)
    assert run["status"] == "failed", run
    assert "content policy" in run["error"]["message"]
    assert fakes["ark-b"].creates == []
    [only] = attempts(server, run_id)
    assert only.error_class == "content_refused"
    check_money(server, run_id, refunded=True)


def test_the_breaker_skips_a_failing_provider_then_probes_it(
    start_server: Callable[..., LiveServer], fakes: dict[str, FakeModelArk]
) -> None:
    fakes["ark"].refuse_creates(503, "ServiceUnavailable")
    server = start(
        start_server, fakes, ["ark", B], breaker_failures=2, breaker_cooldown_seconds=8.0
    )
    key = server.new_key(balance_usd=50)
    done = [server.wait_for_run(key, create(server, key)) for _ in range(4)]
    assert [run["backend"] for run in done] == ["ark-b"] * 4
    tried_ark = [any(a.provider == "ark" for a in attempts(server, r["id"])) for r in done]
    assert tried_ark == [True, True, False, False]  # two failures open the breaker
    refused = fakes["ark"].refused_creates
    assert any("skipped" in line for line in done[3]["logs"]), done[3]["logs"]
    with server.client() as client:
        metrics = client.get("/metrics").text
        ready = client.get("/readyz").json()
    assert 'runbase_provider_breaker_state{provider="ark"} 2.0' in metrics
    assert 'runbase_provider_failures_total{class="not_accepted",provider="ark"} 2.0' in metrics
    assert ready["checks"]["providers"]["ark"]["usable"] is False
    assert ready["checks"]["providers"]["ark-b"]["usable"] is True

    fakes["ark"].refuse_creates(None)  # ModelArk is back
    time.sleep(8.2)  # the cool-down ends: one run probes it, and closes the breaker
    assert fakes["ark"].refused_creates == refused  # skipped: not even asked
    probe = server.wait_for_run(key, create(server, key))
    assert probe["backend"] == "ark"
    with server.client() as client:
        metrics = client.get("/metrics").text
    assert 'runbase_provider_breaker_state{provider="ark"} 0.0' in metrics
    for run in (*done, probe):
        check_money(server, run["id"], refunded=False)


def test_a_task_that_cannot_be_stopped_is_never_sent_elsewhere(
    start_server: Callable[..., LiveServer], fakes: dict[str, FakeModelArk]
) -> None:
    """Past its time, a running task (ModelArk cannot cancel one) ends the run; a queued
    one is cancelled upstream first, and only then does the run move on."""
    server = start(start_server, fakes, ["ark", B], ark_timeout_seconds=1.5)
    key = server.new_key()
    fakes["ark"].queued_seconds, fakes["ark"].running_seconds = 0.0, 60.0
    running = server.wait_for_run(key, create(server, key), timeout=30)
    assert running["status"] == "failed" and running["error"]["code"] == "timeout"
    assert fakes["ark-b"].creates == []
    [only] = attempts(server, running["id"])
    assert only.error_class == "timeout" and only.cost_micros > 0  # billed upstream anyway
    check_money(server, running["id"], refunded=True)

    fakes["ark"].queued_seconds = 60.0
    queued = server.wait_for_run(key, create(server, key), timeout=30)
    assert queued["status"] == "succeeded" and queued["backend"] == "ark-b"
    cancelled = [t for t in fakes["ark"].tasks.values() if fakes["ark"].status(t) == "cancelled"]
    assert len(cancelled) == 1
    check_money(server, queued["id"], refunded=False)


def test_a_route_can_end_at_a_compute_engine(
    start_server: Callable[..., LiveServer], fakes: dict[str, FakeModelArk]
) -> None:
    fakes["ark"].refuse_creates(503, "ServiceUnavailable")
    server = start(start_server, fakes, ["ark", "engine_fixtures:QuickEngine"])
    key = server.new_key()
    run = server.wait_for_run(key, create(server, key))
    assert run["status"] == "succeeded", run
    assert run["backend"] == "quick"
    assert any("compute engine" in line for line in run["logs"]), run["logs"]
    check_money(server, run["id"], refunded=False)


def test_providers_after_a_compute_engine_serve_where_it_cannot_start(
    start_server: Callable[..., LiveServer], fakes: dict[str, FakeModelArk]
) -> None:
    server = start(start_server, fakes, ["engine_fixtures:BrokenSetupEngine", "ark"])
    key = server.new_key()
    run = server.wait_for_run(key, create(server, key), timeout=60)
    assert run["status"] == "succeeded", run
    assert run["backend"] == "ark"
    check_money(server, run["id"], refunded=False)


def test_an_input_no_provider_can_make_is_refused_before_any_charge(
    start_server: Callable[..., LiveServer], fakes: dict[str, FakeModelArk]
) -> None:
    server = start(start_server, fakes, ["provider_fixtures:SmallArk"])
    key = server.new_key(balance_usd=1.0)
    body = {"model": SEEDANCE, "input": {"prompt": "a cat", "resolution": "1080p"}}
    with server.client(key) as client:
        refused = client.post("/api/v1/runs", json=body)
    assert refused.status_code == 400
    assert refused.json()["error"]["code"] == "invalid_input"
    assert "at most 720p" in refused.json()["error"]["message"]
    assert server.admin.runs() == []


def test_a_provider_that_cannot_make_the_input_is_skipped(
    start_server: Callable[..., LiveServer], fakes: dict[str, FakeModelArk]
) -> None:
    server = start(start_server, fakes, ["provider_fixtures:SmallArk", "ark"])
    key = server.new_key()
    run = server.wait_for_run(key, create(server, key, resolution="1080p"))
    assert run["status"] == "succeeded" and run["backend"] == "ark"
    assert any("Small ModelArk skipped" in line for line in run["logs"]), run["logs"]
    assert fakes["ark-b"].creates == []  # SmallArk's fake
    check_money(server, run["id"], refunded=False)


def test_cancel_after_stops_a_run_at_a_provider(
    start_server: Callable[..., LiveServer], fakes: dict[str, FakeModelArk]
) -> None:
    fakes["ark"].queued_seconds = 60.0
    server = start(start_server, fakes, ["ark", B])
    key = server.new_key()
    body = {"model": SEEDANCE, "input": {"prompt": "slow", "resolution": "480p"}}
    with server.client(key) as client:
        response = client.post("/api/v1/runs", json=body, headers={"Cancel-After": "2s"})
    run = server.wait_for_run(key, response.json()["id"], until=("canceled", "failed", "succeeded"))
    assert run["status"] == "canceled", run
    [task] = fakes["ark"].tasks.values()
    assert fakes["ark"].status(task) == "cancelled"
    assert fakes["ark-b"].creates == []
    [only] = attempts(server, run["id"])
    assert only.state == "canceled" and only.cost_micros == 0
    check_money(server, run["id"], refunded=True)
