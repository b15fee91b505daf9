"""Operations over real HTTP: request ids, readiness, Prometheus metrics, JSON logs."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from support import SEEDANCE, LiveServer, database_env, make_settings

BODY = {"model": SEEDANCE, "input": {"prompt": "A lamp", "resolution": "480p"}}


def test_every_response_carries_a_request_id(start_server: Callable[..., LiveServer]) -> None:
    server = start_server(workers=0)
    key = server.new_key()
    with server.client(key) as client:
        fresh = client.post("/api/v1/runs", json=BODY)
        assert re.fullmatch(r"[0-9a-f]{32}", fresh.headers["X-Request-Id"])
        again = client.get(f"/api/v1/runs/{fresh.json()['id']}")
        assert again.headers["X-Request-Id"] != fresh.headers["X-Request-Id"]
        given = client.get("/api/v1/runs/run_x", headers={"X-Request-Id": "trace-42.abc"})
        assert given.status_code == 404 and given.headers["X-Request-Id"] == "trace-42.abc"
        # A header that could break a log line or a response header is replaced, not echoed.
        bad = client.get("/api/v1/runs/run_x", headers={"X-Request-Id": "a b\tc" + "x" * 200})
        assert re.fullmatch(r"[0-9a-f]{32}", bad.headers["X-Request-Id"])
    with server.client() as anonymous:
        for response in (anonymous.get("/api/v1/runs/run_x"), anonymous.get("/healthz")):
            assert response.headers["X-Request-Id"]


async def test_a_500_carries_a_request_id_too(tmp_path: Path) -> None:
    from runbase.http.app import create_app

    app = create_app(make_settings(tmp_path, workers=0))

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("secret internals")

    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
        response = await client.get("/boom", headers={"X-Request-Id": "req-500"})
    assert response.status_code == 500
    assert response.headers["X-Request-Id"] == "req-500"


def test_readyz_reports_database_and_workers(start_server: Callable[..., LiveServer]) -> None:
    server = start_server(workers=2)
    with server.client() as client:
        ready = client.get("/readyz")
        assert client.get("/healthz").json() == {"status": "ok"}
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    assert ready.json()["checks"]["database"] == "ok"
    assert ready.json()["checks"]["workers"] == {"configured": 2, "running": 2}


async def test_readyz_is_503_while_shutting_down(tmp_path: Path) -> None:
    from runbase.http.app import create_app

    app = create_app(make_settings(tmp_path, workers=1))
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        assert (await client.get("/readyz")).status_code == 200
        app.state.services.stopping.set()  # what the lifespan does on SIGTERM
        answer = await client.get("/readyz")
        assert answer.status_code == 503
        assert answer.json()["checks"]["shutting_down"] is True


def test_metrics_count_requests_by_route_and_runs_by_status(
    start_server: Callable[..., LiveServer],
) -> None:
    server = start_server()
    key = server.new_key()
    with server.client(key) as client:
        run_id = client.post("/api/v1/runs", json=BODY).json()["id"]
        server.wait_for_run(key, run_id)
        client.get("/api/v1/runs/run_missing")
        text = client.get("/metrics").text
    assert (
        'runbase_http_requests_total{method="GET",route="/api/v1/runs/{run_id}",status="200"}'
        in text
    )
    assert 'route="/api/v1/runs/{run_id}",status="404"' in text
    assert "run_missing" not in text  # templates, never raw paths
    assert 'runbase_http_request_duration_seconds_bucket{le="0.005",method="POST"' in text
    assert f'runbase_runs{{model="{SEEDANCE}",status="succeeded"}} 1.0' in text
    assert "runbase_queue_depth 0.0" in text
    engine = re.search(r'runbase_engine_seconds_total\{backend="quick",model="[^"]+"\} (\S+)', text)
    assert engine is not None and float(engine.group(1)) > 0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_json_logs_carry_request_and_run_ids(tmp_path: Path) -> None:
    port = _free_port()
    tests_dir = str(Path(__file__).resolve().parents[1])
    env = {
        **os.environ,
        "RUNBASE_LOG_FORMAT": "json",
        "RUNBASE_ENGINES": "engine_fixtures:QuickEngine",
        "RUNBASE_POLL_INTERVAL_SECONDS": "0.05",
        "PYTHONPATH": os.pathsep.join([tests_dir, os.environ.get("PYTHONPATH", "")]),
        **database_env(tmp_path / "data"),
    }
    command = [sys.executable, "-m", "runbase", "serve", "--port", str(port)]
    command += ["--data-dir", str(tmp_path / "data")]
    process = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        key = ""
        for line in process.stdout:
            if "export RUNBASE_API_KEY=" in line:
                key = line.split("=", 1)[1].strip()
            if "serving on" in line:
                break
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(base + "/healthz", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.1)
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}) as client:
            run_id = client.post("/api/v1/runs", json=BODY, headers={"X-Request-Id": "req-7"})
            run_id = run_id.json()["id"]
            while client.get(f"/api/v1/runs/{run_id}").json().get("status") != "succeeded":
                assert time.monotonic() < deadline
                time.sleep(0.1)
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=30)
    # Every log record is a JSON line; other stderr output (a warning printed by
    # multiprocessing's resource tracker at exit) does not go through logging.
    entries = [json.loads(line) for line in stderr.splitlines() if line.startswith("{")]
    assert entries, stderr
    assert all({"time", "level", "logger", "message"} <= set(entry) for entry in entries)
    assert any(entry.get("run_id") == run_id for entry in entries)
    assert any(
        entry.get("request_id") == "req-7" and entry["logger"] == "uvicorn.access"
        for entry in entries
    )
