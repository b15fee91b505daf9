"""The SDK against a live runbase on 127.0.0.1, every case through both faces (`Runbase` and
`AsyncRunbase`, see faces.py): errors, waiting, failures, cancel, lists, pacing, download."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from faces import Connect

from runbase.client import (
    SEEDANCE_1_5_PRO,
    ConnectionFailed,
    IdempotencyKeyReused,
    InsufficientBalance,
    InvalidApiKey,
    InvalidInput,
    InvalidJson,
    InvalidRequest,
    IpNotAllowed,
    MethodNotAllowed,
    MissingApiKey,
    MissingInput,
    MissingModel,
    ModelNotFound,
    NotFound,
    RateLimited,
    RunAlreadyFinished,
    RunbaseError,
    RunFailed,
    RunNotFinished,
    RunNotFound,
    RunStatus,
    SeedanceInput,
    SpendLimitExceeded,
    UsageExceeded,
)
from runbase.core import seedance
from runbase.media.probe import probe
from support import LiveServer

PROMPT = SeedanceInput("A ceramic lamp on a desk", resolution="480p")
Case = Callable[[LiveServer, Connect], object]


def _with_key(server: LiveServer, connect: Connect, **key_options: Any) -> Any:
    return connect(server.new_key(**key_options), server.base_url)


def _rate_limited(server: LiveServer, connect: Connect) -> None:
    secret = server.new_key(rate_limit="1/minute")
    with pytest.raises(RunNotFound):
        connect(secret, server.base_url).runs.get("run_nope")  # the key's one request
    # A second client knows nothing of the first one's budget, and may not retry.
    connect(secret, server.base_url, max_retries=0).runs.get("run_nope")


def _reused_key(server: LiveServer, connect: Connect) -> None:
    client = _with_key(server, connect, balance_usd=5.0)
    client.runs.create(SEEDANCE_1_5_PRO, PROMPT, idempotency_key="order-1")
    client.runs.create(SEEDANCE_1_5_PRO, {"prompt": "Another body"}, idempotency_key="order-1")


def _cancel_finished(server: LiveServer, connect: Connect) -> None:
    client = _with_key(server, connect)
    run = client.runs.create(SEEDANCE_1_5_PRO, PROMPT)
    server.wait_for_run(client._api_key, run.id)
    client.runs.cancel(run.id)


# (code, status, exception, the call that provokes it)
ERROR_CASES: list[tuple[str, int, type[RunbaseError], Case]] = [
    ("missing_api_key", 401, MissingApiKey, lambda s, c: c("", s.base_url).runs.get("run_x")),
    (
        "invalid_api_key",
        401,
        InvalidApiKey,
        lambda s, c: c("sk-" + "x" * 40, s.base_url).runs.create(SEEDANCE_1_5_PRO, PROMPT),
    ),
    (
        "ip_not_allowed",
        403,
        IpNotAllowed,
        lambda s, c: _with_key(s, c, allowed_ips=["10.0.0.0/8"]).runs.get("run_x"),
    ),
    ("RATE_LIMITED", 429, RateLimited, _rate_limited),
    (
        "invalid_json",
        400,
        InvalidJson,
        lambda s, c: _with_key(s, c).request("POST", "/api/v1/runs", content=b"{not json"),
    ),
    (
        "missing_model",
        400,
        MissingModel,
        lambda s, c: _with_key(s, c).request("POST", "/api/v1/runs", json={"input": {}}),
    ),
    (
        "model_not_found",
        400,
        ModelNotFound,
        lambda s, c: _with_key(s, c).runs.create("acme/nothing", PROMPT),
    ),
    (
        "missing_input",
        400,
        MissingInput,
        lambda s, c: _with_key(s, c).request(
            "POST", "/api/v1/runs", json={"model": SEEDANCE_1_5_PRO}
        ),
    ),
    (
        "invalid_input",
        400,
        InvalidInput,
        lambda s, c: _with_key(s, c).runs.create(SEEDANCE_1_5_PRO, {"prompt": "x", "duration": 5}),
    ),
    (
        "USAGE_EXCEEDED",
        429,
        UsageExceeded,
        lambda s, c: _with_key(s, c, daily_run_quota=0).runs.create(SEEDANCE_1_5_PRO, PROMPT),
    ),
    (
        "api_key_spend_limit_exceeded",
        403,
        SpendLimitExceeded,
        lambda s, c: _with_key(s, c, spend_limit_cents=0).runs.create(SEEDANCE_1_5_PRO, PROMPT),
    ),
    (
        "insufficient_balance",
        402,
        InsufficientBalance,
        lambda s, c: _with_key(s, c, balance_usd=0.0).runs.create(SEEDANCE_1_5_PRO, PROMPT),
    ),
    (
        "run_not_found",
        404,
        RunNotFound,
        lambda s, c: _with_key(s, c).runs.get("run_01jf0c4t3m9x8r2q5v7w6y1z0a"),
    ),
    # Extensions.
    (
        "invalid_request",
        400,
        InvalidRequest,
        lambda s, c: _with_key(s, c).runs.list(created_after="yesterday"),
    ),
    (
        "model_not_found",
        404,
        ModelNotFound,
        lambda s, c: _with_key(s, c).models.get("acme/nothing"),
    ),
    ("not_found", 404, NotFound, lambda s, c: _with_key(s, c).request("GET", "/api/v1/nothing")),
    (
        "method_not_allowed",
        405,
        MethodNotAllowed,
        lambda s, c: _with_key(s, c).request("DELETE", "/api/v1/runs"),
    ),
    ("idempotency_key_reused", 409, IdempotencyKeyReused, _reused_key),
]


@pytest.mark.parametrize(
    ("code", "status", "exception", "call"),
    ERROR_CASES,
    ids=[f"{case[0]}-{case[1]}" for case in ERROR_CASES],
)
def test_every_error_code_maps_to_its_exception(
    api_server: LiveServer,
    connect: Connect,
    code: str,
    status: int,
    exception: type[RunbaseError],
    call: Case,
) -> None:
    started = time.monotonic()
    with pytest.raises(RunbaseError) as caught:
        call(api_server, connect)
    error = caught.value
    assert type(error) is exception
    assert (error.code, error.status) == (code, status)
    assert error.message and code in str(error)
    # USAGE_EXCEEDED is a 429 too, but a quota: it must be raised, not waited out.
    assert time.monotonic() - started < 5


def test_cancel_of_a_finished_run_is_run_already_finished(
    server: LiveServer, connect: Connect
) -> None:
    with pytest.raises(RunAlreadyFinished) as caught:
        _cancel_finished(server, connect)
    assert (caught.value.code, caught.value.status) == ("run_already_finished", 409)


def test_rate_limited_carries_retry_after(api_server: LiveServer, connect: Connect) -> None:
    with pytest.raises(RateLimited) as caught:
        _rate_limited(api_server, connect)
    assert caught.value.retry_after is not None and 1 <= caught.value.retry_after <= 60


def test_wait_and_run_return_finished_runs(client: Any) -> None:
    created = client.runs.create(SEEDANCE_1_5_PRO, PROMPT)
    assert created.status == RunStatus.PENDING and not created.is_finished
    expected = seedance.price_micros(seedance.validate_input(PROMPT.to_dict()))
    assert created.cost_micro_usd == expected
    with pytest.deprecated_call():
        assert created.cost_usd == expected  # the old name: same micro-USD, and a warning
    with pytest.raises(RunNotFinished):
        created.download()

    seen: list[Any] = []
    finished = client.runs.wait(created.id, timeout=60, on_update=seen.append)
    assert finished.status == RunStatus.SUCCEEDED and finished.is_finished
    assert finished.output_url and finished.output_url.startswith(client.base_url)
    assert finished.completed_at is not None and finished.started_at is not None
    assert finished.progress == 1.0 and finished.input["resolution"] == "480p"
    assert finished == seen[-1]

    run = client.run(SEEDANCE_1_5_PRO, {"prompt": "A paper boat", "duration": 4})
    assert run.status == RunStatus.SUCCEEDED and run.output_url


def test_run_raises_run_failed_for_a_failed_run(
    start_server: Callable[..., LiveServer], connect: Connect
) -> None:
    server = start_server(engines=["engine_fixtures:FailingEngine"])
    client = connect(server.new_key(), server.base_url)
    with pytest.raises(RunFailed) as caught:
        client.run(SEEDANCE_1_5_PRO, PROMPT)
    failure = caught.value
    assert failure.code == "generation_failed" and failure.status is None
    assert "refused" in failure.message
    assert failure.run.status == RunStatus.FAILED and failure.run.error is not None
    # `wait` returns a failed run; only `run` and `download` raise.
    failed = client.runs.wait(failure.run.id, timeout=10)
    assert failed.status == RunStatus.FAILED
    with pytest.raises(RunFailed):
        failed.download()


def test_cancel_list_models_and_account(
    start_server: Callable[..., LiveServer], connect: Connect
) -> None:
    server = start_server(engines=["engine_fixtures:SlowEngine"])
    client = connect(server.new_key(balance_usd=2.0), server.base_url)
    first = client.runs.create(SEEDANCE_1_5_PRO, PROMPT)
    second = client.runs.create(SEEDANCE_1_5_PRO, SeedanceInput("A second lamp"))
    canceled = client.runs.cancel(second.id)
    assert canceled.status == RunStatus.CANCELED and canceled.is_finished
    assert canceled.error is not None and canceled.error.code == "canceled"
    assert client.runs.cancel(second.id).status == RunStatus.CANCELED  # again: the run

    page = client.runs.list(limit=1)
    assert [run.id for run in page.data] == [second.id] and page.next_cursor
    rest = client.runs.list(limit=5, cursor=page.next_cursor)
    assert [run.id for run in rest.data] == [first.id] and rest.next_cursor is None
    assert [r.id for r in client.runs.list(status="canceled").data] == [second.id]

    account = client.account()
    assert account.balance_micro_usd == 2_000_000 - first.cost_micro_usd  # second refunded
    assert account.key.spent_micro_usd == first.cost_micro_usd
    [model] = client.models.list()
    assert model.id == SEEDANCE_1_5_PRO and model.backends == ("engine_fixtures:SlowEngine",)
    assert client.models.get(SEEDANCE_1_5_PRO).input_schema["required"] == ["prompt"]
    with pytest.raises(RunFailed) as caught:  # a canceled run has no video to download
        canceled.download()
    assert caught.value.code == "canceled"


def test_pacing_keeps_quick_calls_under_the_limit(server: LiveServer, connect: Connect) -> None:
    # max_retries=0: a single 429 would raise, so the client must pace itself from the
    # X-RateLimit-* headers alone (5 requests per 2 s: 16 calls take about 6 s).
    client = connect(server.new_key(rate_limit="5/2seconds"), server.base_url, max_retries=0)
    run = client.runs.create(SEEDANCE_1_5_PRO, PROMPT)
    started = time.monotonic()
    for _ in range(15):
        assert client.runs.get(run.id).id == run.id
    elapsed = time.monotonic() - started
    assert 3 < elapsed < 15


def test_429s_from_another_client_are_retried(server: LiveServer, connect: Connect) -> None:
    secret = server.new_key(rate_limit="3/2seconds")
    greedy, other = connect(secret, server.base_url), connect(secret, server.base_url)
    run = greedy.runs.create(SEEDANCE_1_5_PRO, PROMPT)
    greedy.runs.get(run.id)
    greedy.runs.get(run.id)
    # The key is spent; `other` has not seen the headers, gets a 429 and waits it out.
    assert other.runs.get(run.id).id == run.id


def test_connection_errors_are_retried_when_safe_then_raised(connect: Connect) -> None:
    with socket.socket() as probe_socket:  # a port with nothing listening
        probe_socket.bind(("127.0.0.1", 0))
        port = probe_socket.getsockname()[1]
    client = connect("sk-x", f"http://127.0.0.1:{port}", max_retries=1)
    with pytest.raises(ConnectionFailed) as caught:
        client.runs.get("run_x")
    assert caught.value.status is None
    started = time.monotonic()
    with pytest.raises(ConnectionFailed):
        client.request("POST", "/api/v1/runs", json={})  # a POST without a key: never resent
    assert time.monotonic() - started < 0.4


def test_download_writes_an_mp4_that_probe_reads(
    start_server: Callable[..., LiveServer], connect: Connect, tmp_path: Path
) -> None:
    server = start_server(engines=["preview"])
    videos = tmp_path / "videos"
    videos.mkdir()
    client = connect(server.new_key(), server.base_url)
    run = client.run(
        SEEDANCE_1_5_PRO,
        SeedanceInput('A lighthouse keeper says "storm tonight"', resolution="480p"),
    )
    progress: list[tuple[int, int | None]] = []
    path = run.download(videos / "lighthouse.mp4", on_progress=lambda *p: progress.append(p))
    into_dir = run.download(videos)
    assert path == videos / "lighthouse.mp4"
    assert into_dir == videos / f"{run.id}.mp4"
    assert progress[-1] == (path.stat().st_size, path.stat().st_size)
    # No partial file is left behind.
    assert sorted(p.name for p in videos.iterdir()) == sorted([path.name, into_dir.name])
    info = probe(path)
    assert info.video is not None
    assert (info.video.width, info.video.height, info.video.num_frames) == (864, 496, 97)
    assert len(info.audio) == 1
