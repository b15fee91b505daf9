"""Shared fixtures: a live runbase server on 127.0.0.1 and a free port."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from runbase.http.app import create_app
from support import Admin, LiveServer, drop_test_databases, make_settings


@pytest.fixture(autouse=True)
def _drop_test_databases() -> Iterator[None]:
    """On PostgreSQL, each test's databases are dropped when it ends (see support.py)."""
    yield
    drop_test_databases()


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """Start runbase (create_app + uvicorn) in a thread on 127.0.0.1 and a free port."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(**overrides: Any) -> LiveServer:
        settings = make_settings(tmp_path / "data", **overrides)
        admin = Admin(settings)
        config = uvicorn.Config(
            create_app(settings),
            host="127.0.0.1",
            port=0,
            log_level="warning",
            lifespan="on",
            proxy_headers=False,  # as `runbase serve` runs it
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the server failed to start")
            threading.Event().wait(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        servers.append((server, thread))

        def stop() -> None:
            server.should_exit = True
            thread.join(timeout=30)

        return LiveServer(f"http://127.0.0.1:{port}", settings, admin, stop)

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=30)
