"""Failover across kinds of provider (README "Routing"): every rule of the route with fal,
Replicate, ModelArk and a real second runbase, each run's money checked (charged once,
refunded exactly once when it did not succeed, books exact), its attempts one at a time,
its `backend` the provider that made the video and its `logs` the path it took."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from fakes.common import Fault
from fakes.fal import FakeFal
from fakes.modelark import FakeModelArk
from fakes.replicate import FakeReplicate
from provider_routes import (
    ark_settings,
    attempts,
    check_money,
    check_one_at_a_time,
    create,
    fal_settings,
    replicate_settings,
    runbase_settings,
)
from support import LiveServer
from upstream_runbase import Upstream, upstream_runbase


def start(
    start_server: Callable[..., LiveServer],
    engines: list[str],
    fal: FakeFal,
    replicate: FakeReplicate,
    **overrides: Any,
) -> LiveServer:
    values = {
        "engines": engines,
        "rate_limit": "1000/10seconds",
        **fal_settings(fal),
        **replicate_settings(replicate),
    }
    return start_server(**(values | overrides))


def run_once(server: LiveServer, **input: Any) -> dict[str, Any]:
    key = server.new_key()
    return server.wait_for_run(key, create(server, key, **input), timeout=60)


def path_of(run: dict[str, Any]) -> list[str]:
    """The lines of the run's logs that say where it went."""
    return [line for line in run["logs"] if "next provider" in line or "accepted as" in line]


# ---- refused for the provider's own reasons: the next provider, at once ---------------------


@pytest.mark.parametrize(
    ("engines", "fault", "detail"),
    [
        (["fal", "replicate"], Fault.SERVER_ERROR, "HTTP 500"),
        (["fal", "replicate"], Fault.RATE_LIMITED, "HTTP 429"),
        (["fal", "replicate"], Fault.AUTH, "credentials"),
        (["fal", "replicate"], Fault.QUOTA, "Exhausted balance"),
        (["replicate", "fal"], Fault.SERVER_ERROR, "HTTP 500"),
        (["replicate", "fal"], Fault.AUTH, "credentials"),
        (["replicate", "fal"], Fault.QUOTA, "credit"),
    ],
)
def test_a_refused_submit_moves_to_the_next_provider_at_once(
    start_server: Callable[..., LiveServer],
    fal: FakeFal,
    replicate: FakeReplicate,
    engines: list[str],
    fault: Fault,
    detail: str,
) -> None:
    fakes: dict[str, Any] = {"fal": fal, "replicate": replicate}
    first, second = engines
    fakes[first].faults.add(fault, times=None)
    server = start(start_server, engines, fal, replicate)
    run = run_once(server)
    assert run["status"] == "succeeded", run
    assert run["backend"] == second
    assert fakes[first].creates == [] and len(fakes[second].creates) == 1
    tried = attempts(server, run["id"])
    assert [(a.provider, a.state, a.error_class) for a in tried] == [
        (first, "failed", "not_accepted"),
        (second, "succeeded", None),
    ]
    assert detail in tried[0].error_message
    assert tried[0].cost_micros == 0 and tried[0].task_id is None
    assert tried[1].cost_micros > 0
    check_one_at_a_time(tried)
    [moved, accepted] = path_of(run)
    assert "trying the next provider" in moved and accepted.startswith(
        ("fal: accepted as task", "Replicate: accepted as task")
    )
    check_money(server, run["id"], refunded=False)


def test_a_provider_that_cannot_be_reached_is_passed_over(
    start_server: Callable[..., LiveServer], fal: FakeFal, replicate: FakeReplicate
) -> None:
    server = start(
        start_server, ["fal", "replicate"], fal, replicate, fal_queue_url="http://127.0.0.1:9"
    )
    run = run_once(server)
    assert (run["status"], run["backend"]) == ("succeeded", "replicate"), run
    [first, _] = attempts(server, run["id"])
    assert first.error_class == "not_accepted" and "ConnectError" in first.error_message
    check_money(server, run["id"], refunded=False)


# ---- accepted, then failed or lost upstream: retried once on the next provider --------------


@pytest.mark.parametrize(
    ("engines", "fault"),
    [
        (["fal", "replicate"], Fault.FAILED),
        (["fal", "replicate"], Fault.EXPIRED),
        (["fal", "replicate"], Fault.BAD_VIDEO),
        (["replicate", "fal"], Fault.FAILED),
        (["replicate", "fal"], Fault.EXPIRED),
    ],
)
def test_a_task_failed_upstream_is_retried_once_on_the_next_provider(
    start_server: Callable[..., LiveServer],
    fal: FakeFal,
    replicate: FakeReplicate,
    engines: list[str],
    fault: Fault,
) -> None:
    fakes: dict[str, Any] = {"fal": fal, "replicate": replicate}
    first, second = engines
    fakes[first].faults.add(fault)
    server = start(start_server, engines, fal, replicate)
    run = run_once(server)
    assert run["status"] == "succeeded", run
    assert run["backend"] == second
    assert len(fakes[first].creates) == len(fakes[second].creates) == 1
    tried = attempts(server, run["id"])
    assert [(a.provider, a.error_class) for a in tried] == [(first, "task_failed"), (second, None)]
    assert tried[0].task_id is not None and tried[0].cost_micros == 0  # failures are not billed
    check_one_at_a_time(tried)
    assert len(path_of(run)) == 3  # accepted at the first, moved on, accepted at the second
    check_money(server, run["id"], refunded=False)


def test_a_second_failed_task_ends_the_run_refunded(
    start_server: Callable[..., LiveServer],
    fal: FakeFal,
    replicate: FakeReplicate,
    ark: FakeModelArk,
) -> None:
    fal.faults.add(Fault.FAILED)
    replicate.faults.add(Fault.EXPIRED)
    server = start(start_server, ["fal", "replicate", "ark"], fal, replicate, **ark_settings(ark))
    run = run_once(server)
    assert run["status"] == "failed", run
    assert run["error"]["code"] == "upstream_error"
    assert "fal:" in run["error"]["message"] and "Replicate:" in run["error"]["message"]
    assert ark.creates == []  # a lost task is retried once, not twice
    tried = attempts(server, run["id"])
    assert [a.error_class for a in tried] == ["task_failed", "task_failed"]
    check_one_at_a_time(tried)
    check_money(server, run["id"], refunded=True)


# ---- the user's fault: not sent elsewhere ---------------------------------------------------


@pytest.mark.parametrize(
    ("engines", "how"),
    [
        (["fal", "replicate"], "task"),  # the request runs, then the checker refuses it
        (["fal", "replicate"], "prompt"),
        (["replicate", "fal"], "task"),
        (["replicate", "fal"], "prompt"),
    ],
)
def test_a_content_refusal_fails_the_run_refunded_and_goes_nowhere_else(
    start_server: Callable[..., LiveServer],
    fal: FakeFal,
    replicate: FakeReplicate,
    engines: list[str],
    how: str,
) -> None:
    fakes: dict[str, Any] = {"fal": fal, "replicate": replicate}
    first, second = engines
    if how == "task":
        fakes[first].faults.add(Fault.CONTENT_POLICY)
    else:
        fakes[first].sensitive_words.add("forbidden")
    server = start(start_server, engines, fal, replicate)
    run = run_once(server, prompt="something forbidden")
    assert run["status"] == "failed", run
    assert "content policy" in run["error"]["message"]
    assert fakes[second].creates == []
    [only] = attempts(server, run["id"])
    assert (only.provider, only.error_class) == (first, "content_refused")
    check_money(server, run["id"], refunded=True)


def test_a_submit_without_an_answer_is_never_sent_again(
    start_server: Callable[..., LiveServer], fal: FakeFal, replicate: FakeReplicate
) -> None:
    """fal takes no idempotency key: a submit whose answer was lost may have created a
    request, so the run fails refunded rather than being paid for twice."""
    fal.faults.add(Fault.CONNECTION)
    server = start(start_server, ["fal", "replicate"], fal, replicate)
    run = run_once(server)
    assert run["status"] == "failed", run
    assert "not submitted again" in run["error"]["message"]
    assert replicate.creates == []
    [only] = attempts(server, run["id"])
    assert only.error_class == "submit_uncertain"
    check_money(server, run["id"], refunded=True)


# ---- the circuit breaker, and a task that cannot be stopped ---------------------------------


def test_the_breaker_skips_a_failing_provider(
    start_server: Callable[..., LiveServer], fal: FakeFal, replicate: FakeReplicate
) -> None:
    fal.faults.add(Fault.SERVER_ERROR, times=None)
    server = start(
        start_server,
        ["fal", "replicate"],
        fal,
        replicate,
        breaker_failures=2,
        breaker_cooldown_seconds=600.0,
    )
    key = server.new_key(balance_usd=50)
    done = [server.wait_for_run(key, create(server, key)) for _ in range(3)]
    assert [run["backend"] for run in done] == ["replicate"] * 3
    tried_fal = [any(a.provider == "fal" for a in attempts(server, r["id"])) for r in done]
    assert tried_fal == [True, True, False]  # two failures opened the breaker
    assert any("fal skipped" in line for line in done[2]["logs"]), done[2]["logs"]
    with server.client() as client:
        metrics = client.get("/metrics").text
        ready = client.get("/readyz").json()
    assert 'runbase_provider_breaker_state{provider="fal"} 2.0' in metrics
    assert ready["checks"]["providers"]["fal"]["usable"] is False
    assert ready["checks"]["providers"]["replicate"]["usable"] is True
    for run in done:
        check_money(server, run["id"], refunded=False)


def test_a_running_fal_request_that_times_out_ends_the_run(
    start_server: Callable[..., LiveServer], fal: FakeFal, replicate: FakeReplicate
) -> None:
    """fal cannot stop a request in progress (Seedance goes on and bills it): sending the
    run elsewhere would have it in flight twice, so it ends (timeout, refunded). A queued
    one is removed first, and then the run moves on."""
    server = start(start_server, ["fal", "replicate"], fal, replicate, fal_timeout_seconds=1.5)
    fal.faults.add(Fault.STALL)
    fal.queue_seconds = 0.0
    running = run_once(server)
    assert running["status"] == "failed" and running["error"]["code"] == "timeout", running
    assert replicate.creates == []
    [only] = attempts(server, running["id"])
    assert only.error_class == "timeout" and only.cost_micros > 0  # billed upstream anyway
    check_money(server, running["id"], refunded=True)

    fal.queue_seconds = 60.0
    queued = run_once(server)
    assert (queued["status"], queued["backend"]) == ("succeeded", "replicate"), queued
    assert len(fal.cancels) == 2  # the running one was asked too (and went on)
    tried = attempts(server, queued["id"])
    assert [(a.provider, a.error_class, a.cost_micros) for a in tried] == [
        ("fal", "task_failed", 0),  # removed from the queue: nothing billed
        ("replicate", None, tried[1].cost_micros),
    ]
    check_one_at_a_time(tried)
    check_money(server, queued["id"], refunded=False)


# ---- three kinds in one route ----------------------------------------------------------------


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    with upstream_runbase(tmp_path_factory.mktemp("upstream")) as served_upstream:
        yield served_upstream


@pytest.mark.slow
def test_ark_then_fal_then_a_runbase_upstream(
    start_server: Callable[..., LiveServer],
    fal: FakeFal,
    replicate: FakeReplicate,
    ark: FakeModelArk,
    upstream: Upstream,
) -> None:
    """ModelArk refuses the submit, fal loses the task, the upstream runbase makes it."""
    ark.refuse_creates(503, "ServiceUnavailable")
    fal.faults.add(Fault.FAILED)
    server = start(
        start_server,
        ["ark", "fal", "runbase"],
        fal,
        replicate,
        **ark_settings(ark),
        **runbase_settings(upstream.base_url, upstream.api_key),
    )
    run = run_once(server)
    assert run["status"] == "succeeded", run
    assert run["backend"] == "runbase"
    tried = attempts(server, run["id"])
    assert [(a.provider, a.error_class) for a in tried] == [
        ("ark", "not_accepted"),
        ("fal", "task_failed"),
        ("runbase", None),
    ]
    check_one_at_a_time(tried)
    [upstream_run] = [r for r in upstream.admin.runs() if r.id == tried[2].task_id]
    assert upstream_run.status == "succeeded"
    assert tried[2].cost_micros == upstream_run.cost_micros  # what the upstream charged
    path = path_of(run)
    assert [line.split(":")[0] for line in path] == [
        "ModelArk",
        "fal",
        "fal",
        "the upstream Runbase server",
    ]
    check_money(server, run["id"], refunded=False)
