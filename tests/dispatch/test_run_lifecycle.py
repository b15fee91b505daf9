"""Runs through the whole server: workers, engine child processes, outputs and refunds.

One fixture engine per failure mode (tests/engine_fixtures.py); each test checks the books.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest

from runbase.media.probe import probe
from support import SEEDANCE, LiveServer, start_worker_command, stop_mid_run

PROMPT = {"prompt": 'A lighthouse at dusk. "Hello there."', "resolution": "480p"}


def create(server: LiveServer, key: str, **input_: object) -> str:
    with server.client(key) as client:
        response = client.post(
            "/api/v1/runs", json={"model": SEEDANCE, "input": {**PROMPT, **input_}}
        )
        assert response.status_code == 200, response.text
        return str(response.json()["id"])


def account_of(server: LiveServer, run_id: str) -> str:
    return next(run.account_id for run in server.admin.runs() if run.id == run_id)


def test_run_succeeds_with_a_signed_seekable_mp4(
    start_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    server = start_server()
    key = server.new_key()
    run_id = create(server, key, aspect_ratio="9:16", generate_audio=False)
    run = server.wait_for_run(key, run_id)
    assert run["status"] == "succeeded", run
    assert run["backend"] == "quick"
    assert run["progress"] == 1.0
    assert run["startedAt"] and run["completedAt"] and run["error"] is None
    assert run["logs"][-1] == 'quick details: {"fixture": true}'  # the engine's metadata
    [url] = run["output"]["urls"]
    assert url.startswith(server.base_url + "/files/runs/" + run_id + "/")
    with server.client() as client:  # output URLs need no API key: the signature is the key
        whole = client.get(url)
        assert whole.status_code == 200
        assert whole.headers["content-type"] == "video/mp4"
        assert whole.headers["accept-ranges"] == "bytes"
        part = client.get(url, headers={"Range": "bytes=100-199"})
        assert part.status_code == 206 and part.content == whole.content[100:200]
        parts = urlsplit(url)
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        tampered = dict(query, sig="0" * 64)
        assert client.get(f"{parts.path}?{urlencode(tampered)}").status_code == 404
        expired = dict(query, expires=str(int(time.time()) - 1))
        assert client.get(f"{parts.path}?{urlencode(expired)}").status_code == 404
        other_path = parts.path.replace("output.mp4", "other.mp4")
        assert client.get(f"{other_path}?{parts.query}").status_code == 404
        assert client.get("/files/../runbase.db?expires=1&sig=x").status_code == 404
    video = tmp_path / "out.mp4"
    video.write_bytes(whole.content)
    info = probe(video)
    assert info.video is not None
    assert (info.video.width, info.video.height, info.video.num_frames) == (496, 864, 97)
    assert info.audio == ()
    server.admin.check_books(account_of(server, run_id))


@pytest.mark.parametrize(
    ("engine", "code", "message"),
    [
        ("FailingEngine", "generation_failed", "refused to generate"),
        ("BuggyEngine", "generation_failed", "failed unexpectedly while making the video"),
        ("CrashingEngine", "generation_failed", "exit code 3"),
        ("BadFileEngine", "generation_failed", "96 frames"),
    ],
)
def test_engine_failures_fail_the_run_and_refund_it(
    start_server: Callable[..., LiveServer],
    engine: str,
    code: str,
    message: str,
    capfd: pytest.CaptureFixture[str],
) -> None:
    server = start_server(engines=[f"engine_fixtures:{engine}"])
    key = server.new_key(balance_usd=1.0)
    first, second = create(server, key), create(server, key)
    for run_id in (first, second):  # the worker survives and serves the next run
        run = server.wait_for_run(key, run_id)
        assert run["status"] == "failed"
        assert run["error"]["code"] == code
        assert message in run["error"]["message"]
        assert run["output"] is None and run["completedAt"]
        assert "Traceback" not in run["error"]["message"]
        assert "ZeroDivisionError" not in run["error"]["message"]  # internals stay in the log
    account = account_of(server, first)
    assert server.admin.balance(account) == 1_000_000
    server.admin.check_books(account)
    if engine == "BuggyEngine":  # the engine's exception is in the server log, in full
        server.stop()
        logged = capfd.readouterr().err
        assert "Traceback" in logged and "ZeroDivisionError: division by zero" in logged


def test_hanging_engine_times_out_and_is_refunded(start_server: Callable[..., LiveServer]) -> None:
    server = start_server(engines=["engine_fixtures:HangingEngine"], max_processing_seconds=2)
    key = server.new_key(balance_usd=1.0)
    run_id = create(server, key)
    run = server.wait_for_run(key, run_id, timeout=30)
    assert run["status"] == "failed"
    assert run["error"]["code"] == "timeout"
    server.admin.check_books(account_of(server, run_id))
    assert server.admin.balance(account_of(server, run_id)) == 1_000_000


def test_fallback_to_the_next_engine_is_reported(start_server: Callable[..., LiveServer]) -> None:
    server = start_server(
        engines=["engine_fixtures:BrokenSetupEngine", "engine_fixtures:QuickEngine"]
    )
    key = server.new_key()
    run = server.wait_for_run(key, create(server, key))
    assert run["status"] == "succeeded"
    assert run["backend"] == "quick"
    assert any("weights not found" in line for line in run["logs"]), run["logs"]


def test_no_engine_can_start_fails_runs_with_refund(
    start_server: Callable[..., LiveServer],
) -> None:
    server = start_server(engines=["engine_fixtures:BrokenSetupEngine"])
    key = server.new_key(balance_usd=1.0)
    run_id = create(server, key)
    run = server.wait_for_run(key, run_id)
    assert run["status"] == "failed"
    assert "weights not found" in run["error"]["message"]
    server.admin.check_books(account_of(server, run_id))


def test_progress_and_logs_are_visible_while_processing(
    start_server: Callable[..., LiveServer],
) -> None:
    server = start_server(engines=["engine_fixtures:SlowEngine"])
    key = server.new_key(rate_limit="1000/10seconds")  # the test polls
    run_id = create(server, key)
    seen = server.wait_for_run(key, run_id, until=("processing",))
    assert seen["startedAt"] is not None
    fractions = []
    with server.client(key) as client:
        while (run := client.get(f"/api/v1/runs/{run_id}").json())["status"] == "processing":
            fractions.append(run["progress"])
            time.sleep(0.25)
    assert run["status"] == "succeeded"
    assert fractions == sorted(fractions)
    assert any(0 < fraction < 1 for fraction in fractions)
    assert "slow engine finished" in run["logs"]


def test_shutdown_hands_the_running_run_back(start_server: Callable[..., LiveServer]) -> None:
    server = start_server(engines=["engine_fixtures:SlowEngine"])
    key = server.new_key()
    run_id = create(server, key)
    server.wait_for_run(key, run_id, until=("processing",))
    started = time.monotonic()
    server.stop()
    assert time.monotonic() - started < 10, "shutdown waits for the engine to stop, not finish"
    [row] = server.admin.runs()
    assert (row.status, row.attempts, row.worker_id) == ("pending", 0, None)
    restarted = start_server(engines=["engine_fixtures:SlowEngine"])
    run = restarted.wait_for_run(key, run_id)
    assert run["status"] == "succeeded"
    restarted.admin.check_books(row.account_id)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_worker_command_hands_its_run_back_on_a_signal(
    start_server: Callable[..., LiveServer], signum: int
) -> None:
    server = start_server(workers=0, rate_limit="1000/10seconds")  # the test polls
    key = server.new_key()
    run_id = create(server, key, generate_audio=False)
    env = {
        "RUNBASE_ENGINES": "engine_fixtures:SlowEngine",
        "RUNBASE_TEST_ENGINE_SECONDS": "10",  # it checks for a stop once a second
        "RUNBASE_POLL_INTERVAL_SECONDS": "0.1",
    }
    process = start_worker_command("worker", server.settings.data_dir, env)
    stop_mid_run(server, key, run_id, process, signum)
    # The next worker finishes it, on its first counted attempt, charged once.
    run = start_server(workers=1).wait_for_run(key, run_id)
    assert run["status"] == "succeeded", run
    [row] = server.admin.runs()
    assert row.attempts == 1
    server.admin.check_books(row.account_id)


def test_worker_command_stops_while_its_engine_sets_up(
    start_server: Callable[..., LiveServer],
) -> None:
    server = start_server(workers=0, rate_limit="1000/10seconds")
    key = server.new_key()
    run_id = create(server, key, generate_audio=False)
    env = {"RUNBASE_ENGINES": "engine_fixtures:SlowSetupEngine"}
    process = start_worker_command("worker", server.settings.data_dir, env)
    stop_mid_run(
        server,
        key,
        run_id,
        process,
        signal.SIGTERM,
        under_way=lambda run: run["status"] == "processing",
    )
