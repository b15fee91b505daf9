"""Replicas started at the same moment on a fresh PostgreSQL database all come up: the
migrations run under an advisory lock (storage/migrations/env.py), and the first start's
`default` account is made once. PostgreSQL only (`make test-postgres`).
"""

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
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.pool import NullPool

from support import TEST_DATABASE_URL

REPLICAS = 3

pytestmark = [
    pytest.mark.skipif(TEST_DATABASE_URL is None, reason="PostgreSQL: make test-postgres"),
    pytest.mark.slow,
]


def _admin(statement: str) -> None:
    assert TEST_DATABASE_URL is not None
    engine = create_engine(TEST_DATABASE_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    try:
        with engine.connect() as connection:
            connection.execute(text(statement))
    finally:
        engine.dispose()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_three_replicas_migrate_a_fresh_database_together(tmp_path: Path) -> None:
    assert TEST_DATABASE_URL is not None
    name = f"fresh_{os.getpid()}"
    _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    _admin(f"CREATE DATABASE {name}")  # empty: no tables, no alembic_version
    url = make_url(TEST_DATABASE_URL).set(database=name).render_as_string(hide_password=False)
    ports = [_free_port() for _ in range(REPLICAS)]
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "runbase", "serve", "--host", "127.0.0.1", "--port", str(port)],
            env={
                **os.environ,
                "RUNBASE_DATABASE_URL": url,
                "RUNBASE_DATA_DIR": str(tmp_path / f"replica-{index}"),
                "RUNBASE_WORKERS": "0",
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for index, port in enumerate(ports)
    ]
    try:
        deadline = time.monotonic() + 90
        for port, process in zip(ports, processes, strict=True):
            while True:
                assert process.poll() is None, process.communicate()[0]
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, f"replica on {port} did not come up"
                time.sleep(0.2)
    finally:
        for process in processes:
            process.terminate()
        outputs = [process.communicate(timeout=30)[0] for process in processes]
        _admin(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    # uvicorn ends a graceful shutdown by re-raising the SIGTERM it caught.
    assert all(process.returncode in (0, -signal.SIGTERM) for process in processes), outputs
    assert all("Application shutdown complete" in output for output in outputs), outputs
    # The first start's account and key were made once, by whichever replica came first.
    assert sum("Created account 'default'" in output for output in outputs) == 1, outputs
