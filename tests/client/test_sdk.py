"""The SDK against a live runbase on 127.0.0.1: errors, waiting, failures, pacing, download."""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from runbase.client import (
    SEEDANCE_1_5_PRO,
    AsyncRunbase,
    ConnectionFailed,
    InsufficientBalance,
    InvalidApiKey,
    InvalidInput,
    InvalidJson,
    IpNotAllowed,
    MissingApiKey,
    MissingInput,
    MissingModel,
    ModelNotFound,
    RateLimited,
    Run,
    Runbase,
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


def _with_key(server: LiveServer, **key_options: Any) -> Runbase:
    return Runbase(server.new_key(**key_options), server.base_url)


def _rate_limited(server: LiveServer) -> None:
    secret = server.new_key(rate_limit="1/minute")
    with Runbase(secret, server.base_url) as first, pytest.raises(RunNotFound):
        first.runs.get("run_nope")  # spends the key's only request this minute
    # A second client knows nothing of the first one's budget, and may not retry.
    with Runbase(secret, server.base_url, max_retries=0) as second:
        second.runs.get("run_nope")


# (code, status, exception, the call that provokes it)
ERROR_CASES: list[tuple[str, int, type[RunbaseError], Callable[[LiveServer], object]]] = [
    (
        "missing_api_key",
        401,
        MissingApiKey,
        lambda s: Runbase("", s.base_url).runs.get("run_x"),
    ),
    (
        "invalid_api_key",
        401,
        InvalidApiKey,
        lambda s: Runbase("sk-" + "x" * 40, s.base_url).runs.create(SEEDANCE_1_5_PRO, PROMPT),
    ),
    (
        "ip_not_allowed",
        403,
        IpNotAllowed,
        lambda s: _with_key(s, allowed_ips=["10.0.0.0/8"]).runs.get("run_x"),
    ),
    ("RATE_LIMITED", 429, RateLimited, _rate_limited),
    (
        "invalid_json",
        400,
        InvalidJson,
        lambda s: _with_key(s).request("POST", "/api/v1/runs", content=b"{not json"),
    ),
    (
        "missing_model",
        400,
        MissingModel,
        lambda s: _with_key(s).request("POST", "/api/v1/runs", json={"input": {"prompt": "x"}}),
    ),
    (
        "model_not_found",
        400,
        ModelNotFound,
        lambda s: _with_key(s).runs.create("acme/nothing", PROMPT),
    ),
    (
        "missing_input",
        400,
        MissingInput,
        lambda s: _with_key(s).request("POST", "/api/v1/runs", json={"model": SEEDANCE_1_5_PRO}),
    ),
    (
        "invalid_input",
        400,
        InvalidInput,
        lambda s: _with_key(s).runs.create(SEEDANCE_1_5_PRO, {"prompt": "x", "duration": "5"}),
    ),
    (
        "USAGE_EXCEEDED",
        429,
        UsageExceeded,
        lambda s: _with_key(s, daily_run_quota=0).runs.create(SEEDANCE_1_5_PRO, PROMPT),
    ),
    (
        "api_key_spend_limit_exceeded",
        403,
        SpendLimitExceeded,
        lambda s: _with_key(s, spend_limit_cents=0).runs.create(SEEDANCE_1_5_PRO, PROMPT),
    ),
    (
        "insufficient_balance",
        402,
        InsufficientBalance,
        lambda s: _with_key(s, balance_usd=0.0).runs.create(SEEDANCE_1_5_PRO, PROMPT),
    ),
    (
        "run_not_found",
        404,
        RunNotFound,
        lambda s: _with_key(s).runs.get("run_01jf0c4t3m9x8r2q5v7w6y1z0a"),
    ),
]


@pytest.mark.parametrize(
    ("code", "status", "exception", "call"), ERROR_CASES, ids=[case[0] for case in ERROR_CASES]
)
def test_every_error_code_maps_to_its_exception(
    api_server: LiveServer,
    code: str,
    status: int,
    exception: type[RunbaseError],
    call: Callable[[LiveServer], object],
) -> None:
    started = time.monotonic()
    with pytest.raises(RunbaseError) as caught:
        call(api_server)
    error = caught.value
    assert type(error) is exception
    assert (error.code, error.status) == (code, status)
    assert error.message and code in str(error)
    # USAGE_EXCEEDED is a 429 too, but a quota: it must be raised, not waited out.
    assert time.monotonic() - started < 5


def test_rate_limited_carries_retry_after(api_server: LiveServer) -> None:
    with pytest.raises(RateLimited) as caught:
        _rate_limited(api_server)
    assert caught.value.retry_after is not None and 1 <= caught.value.retry_after <= 60


def test_wait_and_run_return_finished_runs(client: Runbase) -> None:
    created = client.runs.create(SEEDANCE_1_5_PRO, PROMPT)
    assert created.status == RunStatus.PENDING and not created.is_finished
    assert created.cost_usd == seedance.price_micros(seedance.validate_input(PROMPT.to_dict()))
    with pytest.raises(RunNotFinished):
        created.download()

    seen: list[Run] = []
    finished = client.runs.wait(created.id, timeout=60, on_update=seen.append)
    assert finished.status == RunStatus.SUCCEEDED and finished.is_finished
    assert finished.output_url and finished.output_url.startswith(client.base_url)
    assert finished.completed_at is not None and finished.started_at is not None
    assert finished.progress == 1.0 and finished.input["resolution"] == "480p"
    assert seen[-1] == finished

    run = client.run(SEEDANCE_1_5_PRO, {"prompt": "A paper boat", "duration": 4})
    assert run.status == RunStatus.SUCCEEDED and run.output_url


def test_run_raises_run_failed_for_a_failed_run(start_server: Callable[..., LiveServer]) -> None:
    server = start_server(engines=["engine_fixtures:FailingEngine"])
    with Runbase(server.new_key(), server.base_url) as client:
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


def test_pacing_makes_30_quick_calls_finish_without_an_error(server: LiveServer) -> None:
    # max_retries=0: a single 429 would raise, so the client must pace itself from the
    # X-RateLimit-* headers alone (20 requests per 10 s: 31 calls take about 10 s).
    with Runbase(server.new_key(), server.base_url, max_retries=0) as client:
        run = client.runs.create(SEEDANCE_1_5_PRO, PROMPT)
        started = time.monotonic()
        for _ in range(30):
            assert client.runs.get(run.id).id == run.id
        elapsed = time.monotonic() - started
    assert 5 < elapsed < 25


def test_429s_from_another_client_are_retried(server: LiveServer) -> None:
    secret = server.new_key(rate_limit="3/2seconds")
    with Runbase(secret, server.base_url) as greedy, Runbase(secret, server.base_url) as other:
        run = greedy.runs.create(SEEDANCE_1_5_PRO, PROMPT)
        greedy.runs.get(run.id)
        greedy.runs.get(run.id)
        # The key is spent; `other` has not seen the headers, gets a 429 and waits it out.
        assert other.runs.get(run.id).id == run.id


def test_connection_errors_are_retried_on_get_then_raised() -> None:
    with socket.socket() as probe_socket:  # a port with nothing listening
        probe_socket.bind(("127.0.0.1", 0))
        port = probe_socket.getsockname()[1]
    with Runbase("sk-x", f"http://127.0.0.1:{port}", max_retries=1) as client:
        with pytest.raises(ConnectionFailed) as caught:
            client.runs.get("run_x")
        assert caught.value.status is None
        started = time.monotonic()
        with pytest.raises(ConnectionFailed):
            client.runs.create(SEEDANCE_1_5_PRO, PROMPT)  # a POST is never resent
        assert time.monotonic() - started < 0.5


def test_download_writes_an_mp4_that_probe_reads(
    start_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    server = start_server(engines=["preview"])
    videos = tmp_path / "videos"
    videos.mkdir()
    with Runbase(server.new_key(), server.base_url) as client:
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


async def test_async_client(server: LiveServer, tmp_path: Path) -> None:
    async with AsyncRunbase(server.new_key(), server.base_url) as client:
        created = await client.runs.create(SEEDANCE_1_5_PRO, PROMPT)
        finished = await client.runs.wait(created.id, timeout=60)
        assert finished.status == RunStatus.SUCCEEDED
        run = await client.run(SEEDANCE_1_5_PRO, SeedanceInput("A kite", generate_audio=False))
        path = await run.download(tmp_path / "kite.mp4")
        with pytest.raises(RunNotFound):
            await client.runs.get("run_nope")
        with pytest.raises(InvalidJson):
            await client.request("POST", "/api/v1/runs", content=b"[")
    info = probe(path)
    assert info.video is not None and info.video.num_frames == 97 and not info.audio


async def test_async_run_raises_run_failed(start_server: Callable[..., LiveServer]) -> None:
    server = start_server(engines=["engine_fixtures:FailingEngine"])
    async with AsyncRunbase(server.new_key(), server.base_url) as client:
        with pytest.raises(RunFailed) as caught:
            await client.run(SEEDANCE_1_5_PRO, PROMPT)
    assert caught.value.run.status == RunStatus.FAILED
