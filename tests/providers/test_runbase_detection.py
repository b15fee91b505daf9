"""How the runbase provider tells a runbase from runbase.net: only a runbase answers
`GET /api/v1/webhooks/secret` (runbase.net has no such route: 404). Against an upstream
without it, no Idempotency-Key, seed or callback is sent, and a run that asks for a seed is
refused rather than made without it; an upstream that was down at start is asked again
before the next create, not taken for runbase.net. (A real runbase upstream, with live and
test keys: test_runbase_provider.py.)"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from provider_support import KeptLog, make_job
from pydantic import SecretStr

from provider_routes import served
from runbase.providers import InputUnsupported, Pacing
from runbase.providers.runbase import RunbaseProvider

MODEL = "bytedance/seedance-1.5-pro"


class PlainRunsApi:
    """The public runs API only, as runbase.net documents it: no extensions."""

    def __init__(self) -> None:
        self.base_url = ""
        self.down = 0
        """Answer this many more requests for the extension with 503 (an outage)."""
        self.asked = 0
        self.creates: list[tuple[dict[str, str], Any]] = []
        self.app = FastAPI()

        @self.app.get("/api/v1/webhooks/secret")
        async def secret() -> Response:
            self.asked += 1
            if self.down > 0:
                self.down -= 1
                return JSONResponse({"error": {"code": "unavailable"}}, status_code=503)
            return JSONResponse({"error": {"code": "not_found"}}, status_code=404)

        @self.app.post("/api/v1/runs")
        async def create(request: Request) -> Response:
            self.creates.append((dict(request.headers), await request.json()))
            return JSONResponse({"id": f"run_up{len(self.creates)}", "status": "pending"})

    def tick(self) -> None:
        pass


@pytest.fixture
def plain() -> Iterator[PlainRunsApi]:
    with served(PlainRunsApi()) as api:
        yield api


def provider_for(api: PlainRunsApi) -> RunbaseProvider:
    return RunbaseProvider(
        api_key=SecretStr("sk-upstream"),
        base_url=api.base_url,
        pacing=Pacing(submit_retry_s=0.2, allow_private_hosts=True),
    )


async def test_an_upstream_without_extensions_gets_the_public_api_only(
    plain: PlainRunsApi,
) -> None:
    provider = provider_for(plain)
    await provider.start()
    try:
        assert not provider.is_runbase and not provider.accepts_idempotency_key
        with pytest.raises(InputUnsupported):
            provider.check_input(MODEL, {"prompt": "x", "seed": 42})
        provider.check_input(MODEL, {"prompt": "x", "seed": -1})
        job = make_job("run_plain", callback_url="https://gw.example/providers/runbase/cb")
        assert await provider.submit(job, KeptLog()) == "run_up1"
    finally:
        await provider.close()
    [(headers, body)] = plain.creates
    assert "idempotency-key" not in headers
    assert "webhook" not in body and "seed" not in body["input"]
    assert body["input"]["aspect_ratio"] == "16:9" and body["input"]["duration"] == "4"


async def test_an_upstream_down_at_start_is_asked_again(plain: PlainRunsApi) -> None:
    plain.down = 1
    provider = provider_for(plain)
    await provider.start()
    try:
        # Not known yet: nothing is refused on a guess.
        provider.check_input(MODEL, {"prompt": "x", "seed": 42})
        await provider.submit(make_job("run_later"), KeptLog())
        assert plain.asked == 2  # once at start (503), once before the create (404)
        with pytest.raises(InputUnsupported):
            provider.check_input(MODEL, {"prompt": "x", "seed": 42})
    finally:
        await provider.close()
