"""`runbase generate` and `runbase runs get`, run as a user runs them: a subprocess talking
HTTP to a live server, configured by RUNBASE_API_KEY and RUNBASE_BASE_URL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image

from runbase.media.probe import probe
from support import LiveServer

pytestmark = pytest.mark.slow


def runbase(
    tmp_path: Path, *args: str, key: str = "", base_url: str = "http://127.0.0.1:9"
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RUNBASE_API_KEY": key, "RUNBASE_BASE_URL": base_url}
    return subprocess.run(
        [sys.executable, "-m", "runbase", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
    )


def generate(server: LiveServer, tmp_path: Path, *args: str, key: str | None = None) -> Any:
    secret = key if key is not None else server.new_key()
    return runbase(tmp_path, "generate", *args, key=secret, base_url=server.base_url)


def test_generate_writes_the_mp4(server: LiveServer, tmp_path: Path) -> None:
    result = generate(
        server, tmp_path, "A red kite over a beach",
        "--ratio", "1:1", "--resolution", "480p", "--duration", "4", "--no-audio",
        "-o", "kite.mp4",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    # Not a terminal: plain lines, no escape codes.
    assert "created" in result.stdout and "saved kite.mp4" in result.stdout
    assert "\x1b[" not in result.stdout
    info = probe(tmp_path / "kite.mp4")
    assert info.video is not None
    assert (info.video.width, info.video.height, info.video.num_frames) == (640, 640, 97)
    assert info.audio == ()


def test_generate_json(server: LiveServer, tmp_path: Path) -> None:
    result = generate(server, tmp_path, "A paper boat", "--resolution", "480p", "--json")
    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout)  # nothing but the run object on stdout
    assert run["status"] == "succeeded" and run["costUsd"] > 0
    assert run["input"]["generate_audio"] is True
    saved = tmp_path / f"{run['id']}.mp4"
    assert run["file"] == str(saved.resolve())
    assert probe(saved).audio


def test_generate_sends_a_local_image_as_a_data_uri(server: LiveServer, tmp_path: Path) -> None:
    Image.new("RGB", (640, 480), (200, 120, 40)).save(tmp_path / "first.png")
    result = generate(server, tmp_path, "A sunset", "--image", "first.png", "--json")
    assert result.returncode == 0, result.stderr
    run = json.loads(result.stdout)
    # Sent as a data URI, which the server stores once: the run shows a link to the image.
    [image_url] = run["input"]["image_urls"]
    assert httpx.get(image_url).content == (tmp_path / "first.png").read_bytes()
    assert run["input"]["aspect_ratio"] is None  # the worker picks the image's ratio
    info = probe(Path(run["file"]))
    assert info.video is not None and (info.video.width, info.video.height) == (1112, 834)


def test_a_failed_run_exits_1(start_server: Callable[..., LiveServer], tmp_path: Path) -> None:
    server = start_server(engines=["engine_fixtures:FailingEngine"])
    result = generate(server, tmp_path, "A lamp")
    assert result.returncode == 1
    assert "generation_failed" in result.stderr and "refused" in result.stderr
    assert not list(tmp_path.glob("*.mp4"))


@pytest.mark.parametrize(
    "args",
    [
        ["generate", "A lamp", "--ratio", "2:1"],
        ["generate", "A lamp", "--duration", "5"],
        ["generate", "A lamp", "--image", "missing.png"],
        ["generate", "A lamp", "--image", "a.png", "--image", "b.png", "--image", "c.png"],
        ["generate"],
        ["runs", "get"],
    ],
)
def test_usage_errors_exit_2(tmp_path: Path, args: list[str]) -> None:
    result = runbase(tmp_path, *args)  # no server needed: refused before any request
    assert result.returncode == 2, result.stderr


def test_api_errors_exit_3(server: LiveServer, tmp_path: Path) -> None:
    bad_key = "sk-" + "z" * 40
    result = generate(server, tmp_path, "A lamp", key=bad_key)
    assert result.returncode == 3
    assert "invalid_api_key" in result.stderr
    result = generate(server, tmp_path, "A lamp", "--json", key=bad_key)
    assert result.returncode == 3
    assert json.loads(result.stdout)["error"]["code"] == "invalid_api_key"
    result = generate(server, tmp_path, "A lamp", key="")
    assert result.returncode == 3 and "RUNBASE_API_KEY" in result.stderr
    unreachable = runbase(tmp_path, "generate", "A lamp", key=bad_key)  # nothing on port 9
    assert unreachable.returncode == 3 and "connection_failed" in unreachable.stderr


def test_runs_get(server: LiveServer, tmp_path: Path) -> None:
    key = server.new_key()
    run = json.loads(generate(server, tmp_path, "A lamp", "--json", key=key).stdout)
    shown = runbase(tmp_path, "runs", "get", run["id"], key=key, base_url=server.base_url)
    assert shown.returncode == 0, shown.stderr
    assert run["id"] in shown.stdout and "succeeded" in shown.stdout
    as_json = runbase(
        tmp_path, "runs", "get", run["id"], "--json", key=key, base_url=server.base_url
    )
    assert json.loads(as_json.stdout)["status"] == "succeeded"
    missing = runbase(tmp_path, "runs", "get", "run_nope", key=key, base_url=server.base_url)
    assert missing.returncode == 3 and "run_not_found" in missing.stderr


def test_runs_list_cancel_models_and_account(
    start_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    server = start_server(engines=["engine_fixtures:SlowEngine"])
    key = server.new_key(balance_usd=3.0)

    def client(*args: str) -> subprocess.CompletedProcess[str]:
        return runbase(tmp_path, *args, key=key, base_url=server.base_url)

    with server.client(key) as http:
        body = {"model": "bytedance/seedance-1.5-pro", "input": {"prompt": "A lamp"}}
        first = http.post("/api/v1/runs", json=body).json()["id"]
        second = http.post("/api/v1/runs", json=body).json()["id"]  # queued behind the first
    canceled = client("runs", "cancel", second, "--json")
    assert canceled.returncode == 0, canceled.stderr
    assert json.loads(canceled.stdout)["status"] == "canceled"
    again = client("runs", "cancel", second)  # canceling a canceled run answers the run
    assert again.returncode == 0 and "canceled" in again.stdout

    listed = client("runs", "list", "--limit", "1")
    assert listed.returncode == 0, listed.stderr
    assert second in listed.stdout and first not in listed.stdout
    assert "more: runbase runs list --cursor " in listed.stdout
    as_json = json.loads(client("runs", "list", "--status", "canceled", "--json").stdout)
    assert [run["id"] for run in as_json["data"]] == [second]
    assert client("runs", "list", "--status", "done").returncode == 2

    models = client("models")
    assert "bytedance/seedance-1.5-pro" in models.stdout
    assert "engine preview: Apache-2.0" in models.stdout  # the test engine, and its licence
    account = client("account")
    assert account.returncode == 0 and "balance    $" in account.stdout
    assert json.loads(client("account", "--json").stdout)["key"]["prefix"] == key[:10]
    server.wait_for_run(key, first)
    late = client("runs", "cancel", first)
    assert late.returncode == 3 and "run_already_finished" in late.stderr


def test_a_run_canceled_while_generate_waits_exits_1(
    start_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    server = start_server(engines=["engine_fixtures:SlowEngine"], workers=0)  # stays pending
    key = server.new_key()
    env = {**os.environ, "RUNBASE_API_KEY": key, "RUNBASE_BASE_URL": server.base_url}
    process = subprocess.Popen(
        [sys.executable, "-m", "runbase", "generate", "A lamp"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        with server.client(key) as http:
            deadline = time.monotonic() + 60
            while not (runs := http.get("/api/v1/runs").json()["data"]):
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.2)
            assert http.post(f"/api/v1/runs/{runs[0]['id']}/cancel").status_code == 200
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 1
    assert f"{runs[0]['id']} canceled: canceled" in stderr
    assert not list(tmp_path.glob("*.mp4"))
