"""`runbase serve` as an operator runs it: the admin token printed once beside the first
key, the admin side on its own listener, and the token in no log line."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from support import database_env

pytestmark = pytest.mark.slow


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(data_dir: Path, port: int, admin_port: int, log: Path) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "RUNBASE_WORKERS": "0",
        "RUNBASE_ADMIN_PORT": str(admin_port),
        "RUNBASE_LOG_FORMAT": "json",
        **database_env(data_dir),
    }
    env.pop("RUNBASE_ADMIN_TOKEN", None)
    command = [sys.executable, "-m", "runbase", "serve", "--port", str(port)]
    command += ["--data-dir", str(data_dir)]
    with log.open("w") as stderr:
        process = subprocess.Popen(
            command, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True
        )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{admin_port}/admin", timeout=1)
            return process
        except httpx.TransportError:
            assert process.poll() is None, log.read_text()
            time.sleep(0.1)
    raise AssertionError("the server did not start")


def stop(process: subprocess.Popen[str]) -> str:
    process.send_signal(signal.SIGINT)
    stdout, _ = process.communicate(timeout=30)
    return stdout


def test_the_admin_listener_and_a_token_that_is_never_logged(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    port, admin_port = free_port(), free_port()
    public, admin = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{admin_port}"
    first_log = tmp_path / "first.log"
    process = serve(data_dir, port, admin_port, first_log)
    try:
        token = (data_dir / "admin-token").read_text().strip()
        assert oct((data_dir / "admin-token").stat().st_mode & 0o777) == "0o600"
        auth = {"Authorization": f"Bearer {token}"}
        # The admin side answers only on its listener, and that listener nothing else.
        assert httpx.get(f"{public}/admin/api/accounts", headers=auth).status_code == 404
        assert httpx.get(f"{public}/admin").status_code == 404
        accounts = httpx.get(f"{admin}/admin/api/accounts", headers=auth)
        assert accounts.status_code == 200 and accounts.json()["data"][0]["name"] == "default"
        assert httpx.get(f"{admin}/healthz").status_code == 404
        assert httpx.get(f"{public}/healthz").status_code == 200
        created = httpx.post(f"{admin}/admin/api/accounts", headers=auth, json={"name": "acme"})
        assert created.status_code == 201
        wrong = httpx.get(
            f"{admin}/admin/api/accounts", headers={"Authorization": f"Bearer {token}x"}
        )
        assert wrong.status_code == 401 and token not in wrong.text
    finally:
        stdout = stop(process)
    # Printed once, beside the first key ...
    assert stdout.count(token) == 1 and "sk-" in stdout
    assert f"admin console on {admin}/admin" in stdout
    # ... and in no log line, though every request was logged.
    logged = first_log.read_text()
    assert "/admin/api/accounts" in logged and '"logger": "uvicorn.access"' in logged
    assert token not in logged and token[6:] not in logged

    second_log = tmp_path / "second.log"
    process = serve(data_dir, port, admin_port, second_log)
    stdout = stop(process)
    assert token not in stdout + second_log.read_text()
