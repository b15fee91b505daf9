"""Ray as the executor (`RUNBASE_EXECUTOR=ray`): engines in Ray actors on a local cluster.

One Ray instance on 127.0.0.1 with 2 CPUs is shared by the module (it takes seconds and
hundreds of MB to start). Runs go through the live server over HTTP; actors are killed
with SIGKILL by the process id that each run logs, as when a Ray worker or node dies.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

import engine_fixtures
from runbase.config import Settings
from runbase.dispatch import engine_hosts
from runbase.media.probe import probe
from support import (
    RAY_LOOPBACK_ENV,
    S3_BUCKET,
    SEEDANCE,
    LiveServer,
    is_loopback,
    listeners_off_loopback,
    start_worker_command,
    stop_mid_run,
)

ray = pytest.importorskip("ray")
BUCKET = S3_BUCKET

TESTS_DIR = Path(__file__).resolve().parents[1]
ACTOR_PID = re.compile(r"engine actor pid (\d+)")
SLOW = "engine_fixtures:SlowEngine"

# Ray's workers inherit the environment of the Ray instance: loopback only (see
# support.RAY_LOOPBACK_ENV), the tests directory on the path for the fixture engines, a
# slow engine slow enough to be hit, and the credentials of the moto S3 server (an actor's
# node needs its own S3 credentials).
RAY_ENV = {
    **RAY_LOOPBACK_ENV,
    "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")]),
    "RUNBASE_TEST_ENGINE_SECONDS": "4",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    """A local Ray instance on 127.0.0.1 (2 CPUs, small object store) for the module."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in RAY_ENV.items():
            patch.setenv(name, value)
        # A short temporary directory: Ray's socket paths must stay under 108 bytes.
        temp_dir = tempfile.mkdtemp(prefix="rb-ray-")
        ray.init(
            num_cpus=2,
            include_dashboard=False,
            object_store_memory=200 * 1024 * 1024,
            namespace="runbase",
            configure_logging=False,
            log_to_driver=False,
            _node_ip_address="127.0.0.1",
            _temp_dir=temp_dir,
        )
        try:
            address = str(ray.get_runtime_context().gcs_address)
            assert is_loopback(address.rpartition(":")[0]), address
            yield address
        finally:
            ray.shutdown()
            subprocess.run(["rm", "-rf", temp_dir], check=False)


@pytest.fixture
def ray_server(
    start_server: Callable[..., LiveServer], ray_address: str
) -> Callable[..., LiveServer]:
    def start(**overrides: object) -> LiveServer:
        options = {"rate_limit": "1000/10seconds", **overrides}  # the tests poll
        return start_server(executor="ray", ray_address=ray_address, **options)

    return start


def create(server: LiveServer, key: str, **input_: object) -> str:
    body = {"model": SEEDANCE, "input": {"prompt": "a harbour", "resolution": "480p", **input_}}
    with server.client(key) as client:
        response = client.post("/api/v1/runs", json=body)
        assert response.status_code == 200, response.text
        return str(response.json()["id"])


def read_run(server: LiveServer, key: str, run_id: str) -> dict[str, object]:
    with server.client(key) as client:
        run: dict[str, object] = client.get(f"/api/v1/runs/{run_id}").json()
        return run


def actor_pids(run: dict[str, object]) -> list[int]:
    logs = run.get("logs") or []
    assert isinstance(logs, list)
    return [int(m.group(1)) for line in logs if (m := ACTOR_PID.search(str(line)))]


def wait_for_actor(
    server: LiveServer, key: str, run_id: str, *, besides: tuple[int, ...] = ()
) -> int:
    """The pid of the actor now rendering the run (one not in `besides`)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        run = read_run(server, key, run_id)
        fresh = [pid for pid in actor_pids(run) if pid not in besides]
        if fresh and run["status"] == "processing":
            return fresh[-1]
        assert run["status"] in ("pending", "processing"), run
        time.sleep(0.1)
    raise AssertionError(f"no new actor picked up run {run_id}")


def test_runs_succeed_on_ray_actors_with_real_mp4s(
    ray_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    server = ray_server(engines=["preview"])
    key = server.new_key()
    run_ids = [create(server, key, generate_audio=index == 0) for index in range(2)]
    runs = [server.wait_for_run(key, run_id, timeout=120) for run_id in run_ids]
    for run, audio in zip(runs, (True, False), strict=True):
        assert run["status"] == "succeeded", run
        assert run["backend"] == "preview"
        assert actor_pids(run), run["logs"]  # rendered by an actor, not in this process
        # The engine's metadata came back from the actor as the run's last log line.
        details = json.loads(run["logs"][-1].removeprefix("preview details: "))
        assert details["preview"] is True and details["music"] is False
        [url] = run["output"]["urls"]
        assert url.startswith(f"{server.base_url}/files/runs/{run['id']}/")
        video = tmp_path / f"{run['id']}.mp4"
        video.write_bytes(httpx.get(url, timeout=30).content)
        info = probe(video)
        assert info.video is not None and (info.video.width, info.video.height) == (864, 496)
        assert bool(info.audio) is audio
    # One worker keeps one actor, with its engine loaded, for all its runs.
    assert actor_pids(runs[0]) == actor_pids(runs[1])
    assert actor_pids(runs[0])[0] != os.getpid()
    server.admin.check_books(server.admin.runs()[0].account_id)


def test_ray_listens_on_loopback_only(
    ray_server: Callable[..., LiveServer], ray_address: str
) -> None:
    server = ray_server()
    key = server.new_key()
    run = server.wait_for_run(key, create(server, key, generate_audio=False), timeout=60)
    assert run["status"] == "succeeded", run  # so an engine actor's worker process is up
    assert is_loopback(ray_address.rpartition(":")[0]), ray_address
    assert [is_loopback(node["NodeManagerAddress"]) for node in ray.nodes()] == [True]
    assert is_loopback(ray.util.get_node_ip_address())
    # The GCS, the raylet, the agents and every worker are children of this process.
    assert listeners_off_loopback(os.getpid()) == []


def test_actors_upload_to_s3_themselves(
    ray_server: Callable[..., LiveServer], s3_endpoint: str, tmp_path: Path
) -> None:
    server = ray_server(storage_url=f"s3://{BUCKET}/ray", s3_endpoint_url=s3_endpoint)
    key = server.new_key()
    run = server.wait_for_run(key, create(server, key, generate_audio=False), timeout=60)
    assert run["status"] == "succeeded", run
    [url] = run["output"]["urls"]
    assert url.startswith(f"{s3_endpoint}/{BUCKET}/ray/runs/{run['id']}/output.mp4?")
    video = tmp_path / "out.mp4"
    video.write_bytes(httpx.get(url, timeout=30).content)
    assert probe(video).video is not None
    assert not (server.settings.outputs_dir / "runs").exists()  # nothing went through here


def test_a_killed_actor_is_replaced_and_the_run_retried_once(
    ray_server: Callable[..., LiveServer],
) -> None:
    server = ray_server(engines=[SLOW])
    key = server.new_key()
    run_id = create(server, key, generate_audio=False)
    first = wait_for_actor(server, key, run_id)
    os.kill(first, signal.SIGKILL)
    second = wait_for_actor(server, key, run_id, besides=(first,))
    run = server.wait_for_run(key, run_id, timeout=60)
    assert run["status"] == "succeeded", run
    assert actor_pids(run) == [first, second]
    assert any("engine lost" in str(line) for line in run["logs"])  # type: ignore[union-attr]
    [row] = server.admin.runs()
    assert row.attempts == 2
    server.admin.check_books(row.account_id)


def test_an_actor_killed_twice_fails_the_run_worker_lost_refunded_once(
    ray_server: Callable[..., LiveServer],
) -> None:
    server = ray_server(engines=[SLOW])
    key = server.new_key(balance_usd=5.0)
    run_id = create(server, key, generate_audio=False)
    first = wait_for_actor(server, key, run_id)
    os.kill(first, signal.SIGKILL)
    second = wait_for_actor(server, key, run_id, besides=(first,))
    os.kill(second, signal.SIGKILL)
    run = server.wait_for_run(key, run_id, timeout=60)
    assert run["status"] == "failed", run
    assert run["error"]["code"] == "worker_lost"  # type: ignore[index]
    [row] = server.admin.runs()
    assert row.attempts == 2
    server.admin.check_books(row.account_id)
    assert server.admin.balance(row.account_id) == 5_000_000  # charged once, refunded once
    # The worker goes on with a new actor.
    assert server.wait_for_run(key, create(server, key), timeout=60)["status"] == "succeeded"


def test_cancel_stops_the_engine_in_its_actor(ray_server: Callable[..., LiveServer]) -> None:
    server = ray_server(engines=[SLOW])
    key = server.new_key()
    run_id = create(server, key, generate_audio=False)
    pid = wait_for_actor(server, key, run_id)
    with server.client(key) as client:
        answer = client.post(f"/api/v1/runs/{run_id}/cancel")
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "canceled"
    # The engine stopped between steps; the actor lives on and takes the next run.
    run = server.wait_for_run(key, create(server, key), timeout=60)
    assert run["status"] == "succeeded" and actor_pids(run) == [pid]
    server.admin.check_books(server.admin.runs()[0].account_id)


def dispatcher_env(ray_address: str, engine: str) -> dict[str, str]:
    return {
        **RAY_ENV,
        "RUNBASE_RAY_ADDRESS": ray_address,
        "RUNBASE_ENGINES": engine,
        "RUNBASE_POLL_INTERVAL_SECONDS": "0.1",
    }


def test_dispatcher_command_serves_an_api_only_server(
    start_server: Callable[..., LiveServer], ray_address: str
) -> None:
    server = start_server(workers=0, rate_limit="1000/10seconds")
    key = server.new_key()
    run_id = create(server, key, generate_audio=False)
    env = dispatcher_env(ray_address, "engine_fixtures:QuickEngine")
    process = start_worker_command("dispatcher", server.settings.data_dir, env)
    try:
        run = server.wait_for_run(key, run_id, timeout=60)
        assert listeners_off_loopback(process.pid) == []  # a Ray driver too
    finally:
        process.send_signal(signal.SIGINT)
        output, _ = process.communicate(timeout=30)
    assert run["status"] == "succeeded", (run, output)
    assert run["backend"] == "quick" and actor_pids(run)
    assert process.returncode == 0, output


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_dispatcher_hands_its_run_back_on_a_signal(
    start_server: Callable[..., LiveServer], ray_address: str, signum: int
) -> None:
    server = start_server(workers=0, rate_limit="1000/10seconds")
    key = server.new_key()
    run_id = create(server, key, generate_audio=False)
    env = {**dispatcher_env(ray_address, SLOW), "RUNBASE_TEST_ENGINE_SECONDS": "10"}
    process = start_worker_command("dispatcher", server.settings.data_dir, env)
    output = stop_mid_run(server, key, run_id, process, signum)
    assert actor_pids(read_run(server, key, run_id)), output  # it was on an actor
    assert "received at time" not in output  # Ray's crash report: a planned stop is no crash


def test_dispatcher_stops_while_its_actor_waits_for_resources(
    start_server: Callable[..., LiveServer], ray_address: str
) -> None:
    # Both of the cluster's CPUs taken: the dispatcher's actor cannot be placed.
    hog = ray.remote(num_cpus=2)(engine_fixtures.Idle).remote()
    ray.get(hog.ping.remote())
    try:
        server = start_server(workers=0, rate_limit="1000/10seconds")
        key = server.new_key()
        run_id = create(server, key, generate_audio=False)
        env = dispatcher_env(ray_address, "engine_fixtures:QuickEngine")
        process = start_worker_command("dispatcher", server.settings.data_dir, env)
        stop_mid_run(
            server,
            key,
            run_id,
            process,
            signal.SIGINT,
            under_way=lambda run: run["status"] == "processing",
        )
    finally:
        ray.kill(hog)


def test_without_ray_the_executor_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    monkeypatch.delitem(sys.modules, "runbase.dispatch.ray_executor", raising=False)
    with pytest.raises(RuntimeError, match=r"pip install 'runbase\[ray\]'"):
        engine_hosts.open_engine(Settings(data_dir=tmp_path, executor="ray"))


def test_engine_actors_ask_for_the_gpus_their_engine_needs(tmp_path: Path) -> None:
    from runbase.dispatch.ray_executor import default_num_gpus

    def gpus(**settings: object) -> float:
        return default_num_gpus(Settings(data_dir=tmp_path, **settings))  # type: ignore[arg-type]

    assert gpus() == 0.0  # preview
    assert gpus(engines=["ltx2"]) == 1.0
    assert gpus(engines=["ltx2"], ltx2_context_parallel=4) == 4.0
    assert gpus(engines=["ltx2"], ltx2_device="cpu") == 0.0
    assert gpus(engines=["ltx2"], ray_num_gpus=0.5) == 0.5
