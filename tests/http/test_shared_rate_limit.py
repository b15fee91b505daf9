"""Two API servers sharing one Redis enforce one rate limit per key between them."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from support import LiveServer

pytest.importorskip("redis")
REDIS_SERVER = shutil.which("redis-server")


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A throwaway redis-server on a free port of 127.0.0.1, persisting nothing."""
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(port), "--save", ""]
    command += ["--appendonly", "no", "--dir", str(tmp_path)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_two_servers_enforce_one_limit(
    start_server: Callable[..., LiveServer], redis_url: str
) -> None:
    options = {"workers": 0, "rate_limit": "6/minute", "rate_limit_storage_url": redis_url}
    first, second = start_server(**options), start_server(**options)
    key = first.new_key()  # both servers share one database, so the key works on both
    statuses, remaining = [], []
    with first.client(key) as a, second.client(key) as b:
        for client in (a, b, a, b, a, b, a, b):
            response = client.get("/api/v1/runs/run_00000000000000000000000000")
            statuses.append(response.status_code)
            remaining.append(response.headers.get("X-RateLimit-Remaining"))
    assert statuses == [404] * 6 + [429, 429], statuses
    assert remaining[:6] == ["5", "4", "3", "2", "1", "0"], remaining


def test_without_shared_storage_each_server_counts_alone(
    start_server: Callable[..., LiveServer],
) -> None:
    first, second = (
        start_server(workers=0, rate_limit="2/minute"),
        start_server(workers=0, rate_limit="2/minute"),
    )
    key = first.new_key()
    with first.client(key) as a, second.client(key) as b:
        statuses = [
            c.get("/api/v1/runs/run_00000000000000000000000000").status_code
            for c in (a, a, b, b, a)
        ]
    assert statuses == [404, 404, 404, 404, 429]
