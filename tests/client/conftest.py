"""Fixtures for the client tests: a live server on 127.0.0.1, a key, and a client for it."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest

from runbase.client import Runbase
from support import LiveServer


@pytest.fixture
def server(start_server: Callable[..., LiveServer]) -> LiveServer:
    """A server whose engine answers every run at once with a valid MP4 (QuickEngine)."""
    return start_server()


@pytest.fixture
def api_server(start_server: Callable[..., LiveServer]) -> LiveServer:
    """A server without workers, for tests that only look at the API's answers."""
    return start_server(workers=0)


@pytest.fixture
def client(server: LiveServer) -> Iterator[Runbase]:
    with Runbase(server.new_key(), server.base_url) as client:
        yield client
