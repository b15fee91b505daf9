"""Fixtures for the client tests: a live server on 127.0.0.1, keys, and clients of both
faces (`face`: the blocking `Runbase` and the asyncio `AsyncRunbase`, see faces.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from faces import FACES, Connect, open_client

from support import LiveServer


@pytest.fixture
def server(start_server: Callable[..., LiveServer]) -> LiveServer:
    """A server whose engine answers every run at once with a valid MP4 (QuickEngine)."""
    return start_server()


@pytest.fixture
def api_server(start_server: Callable[..., LiveServer]) -> LiveServer:
    """A server without workers, for tests that only look at the API's answers."""
    return start_server(workers=0)


@pytest.fixture(params=FACES)
def face(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def connect(face: str) -> Iterator[Connect]:
    """`connect(api_key, base_url, **options)`: a client of this test's face, closed at the
    end of the test."""
    opened: list[Any] = []

    def open_one(*args: Any, **kwargs: Any) -> Any:
        client = open_client(face, *args, **kwargs)
        opened.append(client)
        return client

    yield open_one
    for client in opened:
        client.close()


@pytest.fixture
def client(server: LiveServer, connect: Connect) -> Any:
    return connect(server.new_key(), server.base_url)
