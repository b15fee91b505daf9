"""A real second runbase (`runbase serve` in a subprocess on 127.0.0.1) for the runbase
provider's tests: the quick fixture engine, the default rate limit of 20 requests per 10 s."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from support import Admin, database_env, make_settings

TESTS_DIR = Path(__file__).resolve().parents[1]


@dataclass
class Upstream:
    base_url: str
    admin: Admin
    account_id: str
    api_key: str


@contextmanager
def upstream_runbase(data_dir: Path, **env: str) -> Iterator[Upstream]:
    settings = make_settings(data_dir)
    admin = Admin(settings)  # migrates the database the subprocess then uses
    account_id = admin.create_account("gateway", 100.0)
    api_key = admin.create_key(account_id)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    environment = {
        **os.environ,
        **database_env(data_dir),
        "PYTHONPATH": os.pathsep.join([str(TESTS_DIR), os.environ.get("PYTHONPATH", "")]),
        "RUNBASE_ENGINES": "engine_fixtures:QuickEngine",
        "RUNBASE_WORKERS": "4",
        "RUNBASE_POLL_INTERVAL_SECONDS": "0.05",
        "RUNBASE_ALLOW_PRIVATE_WEBHOOK_HOSTS": "true",
        "RUNBASE_WEBHOOK_HTTP_HOSTS": "127.0.0.1",
        **env,
    }
    environment.pop("RUNBASE_RATE_LIMIT", None)  # the default: 20 per 10 s, as runbase.net
    command = [sys.executable, "-m", "runbase", "serve", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--data-dir", str(data_dir)]
    process = subprocess.Popen(
        command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True,
    )  # fmt: skip
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(base_url + "/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None, "the upstream runbase exited"
            assert time.monotonic() < deadline, "the upstream runbase did not start"
            time.sleep(0.1)
        yield Upstream(base_url, admin, account_id, api_key)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
