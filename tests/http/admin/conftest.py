"""Fixtures for the admin API: a live server and an httpx client holding its admin token."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import httpx
import pytest

from runbase.core.admin_token import load_admin_token
from support import LiveServer


@dataclass
class AdminServer:
    server: LiveServer
    token: str
    api: httpx.Client
    """Sends the admin token; base URL `/admin/api`."""

    def runs_client(self, key: str) -> httpx.Client:
        return self.server.client(key)


@pytest.fixture
def admin_server(start_server: Callable[..., LiveServer]) -> Iterator[Callable[..., AdminServer]]:
    clients: list[httpx.Client] = []

    def start(**overrides: object) -> AdminServer:
        server = start_server(**overrides)
        token = load_admin_token(None, server.settings.data_dir).value
        api = httpx.Client(
            base_url=server.base_url + "/admin/api",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        )
        clients.append(api)
        return AdminServer(server, token, api)

    yield start
    for client in clients:
        client.close()
