"""One dispatch path: the hot routes (`http/hot_routes.py`) pass through every middleware an
app adds, and each surface's authentication is declared once, so the OpenAPI documents
say which operations take a key (or the admin token) and the server does what they say."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from envelopes import error_of
from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from runbase.core.admin_token import load_admin_token
from runbase.http.app import create_app
from runbase.http.hot_routes import HotRoutes
from runbase.http.routes import runs
from support import SEEDANCE, Admin, LiveServer, make_settings

BODY = {"model": SEEDANCE, "input": {"prompt": "A lamp on a desk"}}
ORIGIN = "https://console.example"
PREFIXES = ("/api/v1", "/v1")


class PathRecorder:
    """A user's middleware: notes the method, path and status of every request it sees."""

    def __init__(self, app: ASGIApp, seen: list[tuple[str, str, int]]) -> None:
        self.app, self.seen = app, seen

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def note_status(message: Any) -> None:
            if message["type"] == "http.response.start":
                self.seen.append((scope["method"], scope["path"], message["status"]))
            await send(message)

        await self.app(scope, receive, note_status)


@asynccontextmanager
async def running(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://test") as client,
    ):
        yield client


async def test_middleware_added_to_the_app_sees_the_hot_routes(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, workers=0)
    admin = Admin(settings)
    key = admin.create_key(admin.create_account("cors"))
    seen: list[tuple[str, str, int]] = []
    app = create_app(settings)
    app.add_middleware(
        CORSMiddleware,
        allow_origins=[ORIGIN],
        allow_methods=["GET", "POST"],
        allow_headers=["authorization", "content-type"],
    )
    app.add_middleware(PathRecorder, seen=seen)  # added last: outside CORS
    headers = {"Authorization": f"Bearer {key}", "Origin": ORIGIN}
    async with running(app) as client:
        for prefix in PREFIXES:
            created = await client.post(f"{prefix}/runs", json=BODY, headers=headers)
            assert created.status_code == 200, created.text
            run_id = created.json()["id"]
            read = await client.get(f"{prefix}/runs/{run_id}", headers=headers)
            assert read.status_code == 200 and read.json()["id"] == run_id
            missing = await client.get(f"{prefix}/runs/run_missing", headers=headers)
            error_of(f"{prefix}/runs/x", missing)
            # A browser's preflight, answered by CORS before any route.
            preflight = await client.options(
                f"{prefix}/runs",
                headers={
                    "Origin": ORIGIN,
                    "Access-Control-Request-Method": "POST",
                    "Access-Control-Request-Headers": "authorization,content-type",
                },
            )
            assert preflight.status_code == 200
            for answer in (created, read, missing):
                assert answer.headers["access-control-allow-origin"] == ORIGIN
                assert "x-request-id" in answer.headers  # runbase's own middleware too
            assert seen[-4:] == [
                ("POST", f"{prefix}/runs", 200),
                ("GET", f"{prefix}/runs/{run_id}", 200),
                ("GET", f"{prefix}/runs/run_missing", 404),
                ("OPTIONS", f"{prefix}/runs", 200),
            ]
        metrics = (await client.get("/metrics")).text
    for prefix in PREFIXES:  # labelled by route, whichever path served them
        for method, route in (("POST", "/runs"), ("GET", "/runs/{run_id}")):
            label = f'method="{method}",route="{prefix}{route}",status="200"'
            assert f"runbase_http_requests_total{{{label}}} 1.0" in metrics, label


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    ]


def _concrete(path: str) -> str:
    """A path of the template, with a made-up value for each parameter."""
    return path.replace("{", "x").replace("}", "")


PUBLIC = {"/files/{key}", "/readyz", "/metrics"}
"""The only operations of /openapi.json that need no key."""


def test_every_operation_that_takes_a_key_declares_it_and_refuses_without_one(
    start_server: Callable[..., LiveServer],
) -> None:
    server = start_server(workers=0)
    with server.client() as anonymous:
        document = anonymous.get("/openapi.json").json()
        scheme = document["components"]["securitySchemes"]["ApiKey"]
        assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
        operations = _operations(document)
        assert len(operations) >= 30
        for method, path, operation in operations:
            url = _concrete(path)
            answer = anonymous.request(method, url)
            if path in PUBLIC:
                assert "security" not in operation, path
                assert answer.status_code != 401, (method, path)
                continue
            assert operation.get("security") == [{"ApiKey": []}], (method, path)
            assert answer.status_code == 401, (method, path, answer.text)
            if method != "HEAD":
                error_of(path, answer)


def test_the_admin_document_declares_the_admin_token_on_every_route(
    start_server: Callable[..., LiveServer],
) -> None:
    server = start_server(workers=0)
    token = load_admin_token(None, server.settings.data_dir).value
    with server.client() as anonymous:
        refused = anonymous.get("/admin/api/openapi.json")
        assert refused.status_code == 401
        document = anonymous.get(
            "/admin/api/openapi.json", headers={"Authorization": f"Bearer {token}"}
        ).json()
        scheme = document["components"]["securitySchemes"]["AdminToken"]
        assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
        assert "ApiKey" not in document["components"]["securitySchemes"]
        operations = _operations(document)
        assert len(operations) >= 15
        for method, path, operation in operations:
            assert path.startswith("/admin/api/"), path
            assert operation["security"] == [{"AdminToken": []}], (method, path)
            assert "422" not in operation["responses"], (method, path)
            answer = anonymous.request(method, _concrete(path))
            assert answer.status_code == 401, (method, path, answer.text)
            assert answer.json()["error"]["code"] == "missing_admin_token"
    # ... and the public document has none of it.
    with server.client() as anonymous:
        public = anonymous.get("/openapi.json").json()
    assert not [path for path in public["paths"] if path.startswith("/admin")]
    assert "AdminToken" not in public["components"]["securitySchemes"]


def test_a_hot_route_must_take_the_key_and_nothing_else(monkeypatch: pytest.MonkeyPatch) -> None:
    """The hot path calls the endpoint with the key only: a dependency added to a hot route
    (which FastAPI would solve and document, and the hot path would skip) stops start-up."""
    [route] = [r for r in runs.router.routes if getattr(r, "endpoint", None) is runs.read_run]
    assert isinstance(route, APIRoute)
    HotRoutes(runs.router)  # as declared: accepted
    extra = Dependant(call=lambda: None)
    monkeypatch.setattr(route.dependant, "dependencies", [*route.dependant.dependencies, extra])
    with pytest.raises(TypeError, match=r"must depend on deps\.ApiKey and nothing else"):
        HotRoutes(runs.router)
