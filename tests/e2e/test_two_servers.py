"""Two real runbase servers: a gateway `runbase serve` with `RUNBASE_ENGINES=runbase` in front
of a second `runbase serve` with the default limit of 20 requests per 10 s (runbase.net's).
Twenty runs created at once all succeed (the gateway paces itself to the upstream's limit),
their videos are served by the gateway (still there once the upstream is gone), the
upstream's signed webhooks reach the gateway's callback route, and the money is exact on
both sides."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from runbase.media.probe import probe
from runbase.storage.tables import UpstreamAttemptRow, WebhookDeliveryRow
from server_process import ServerProcess, free_port
from support import SEEDANCE, Admin, make_settings
from upstream_runbase import Upstream, upstream_runbase

RUNS = 20

pytestmark = pytest.mark.slow


@pytest.fixture
def upstream(tmp_path: Path) -> Iterator[Upstream]:
    with upstream_runbase(tmp_path / "upstream") as served:
        yield served


async def create_all(base_url: str, key: str) -> list[str]:
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as client:

        async def one(index: int) -> str:
            body = {
                "model": SEEDANCE,
                "input": {"prompt": f"harbour {index}", "resolution": "480p", "duration": "4"},
            }
            response = await client.post("/api/v1/runs", json=body)
            assert response.status_code == 200, response.text
            return str(response.json()["id"])

        return list(await asyncio.gather(*(one(i) for i in range(RUNS))))


def wait_for_all(client: httpx.Client, run_ids: list[str], timeout: float) -> list[dict[str, Any]]:
    until = time.monotonic() + timeout
    while True:
        runs = [client.get(f"/api/v1/runs/{run_id}").json() for run_id in run_ids]
        if all(run["status"] in ("succeeded", "failed", "canceled") for run in runs):
            return runs
        assert time.monotonic() < until, [run["status"] for run in runs]
        time.sleep(0.5)


def test_a_gateway_in_front_of_a_second_runbase(tmp_path: Path, upstream: Upstream) -> None:
    port = free_port()
    gateway = ServerProcess(
        tmp_path / "gateway",
        port,
        {
            "RUNBASE_ENGINES": "runbase",
            "RUNBASE_RUNBASE_BASE_URL": upstream.base_url,
            "RUNBASE_RUNBASE_API_KEY": upstream.api_key,
            "RUNBASE_RUNBASE_ALLOW_PRIVATE_HOSTS": "true",
            "RUNBASE_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "RUNBASE_STARTING_BALANCE_USD": "100",
            "RUNBASE_ACCESS_LOG": "false",
        },
    )
    try:
        key = gateway.printed_key
        assert key is not None
        run_ids = asyncio.run(create_all(gateway.base_url, key))
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=gateway.base_url, headers=headers, timeout=30) as client:
            runs = wait_for_all(client, run_ids, timeout=120)
            assert [run["status"] for run in runs] == ["succeeded"] * RUNS, runs
            assert {run["backend"] for run in runs} == {"runbase"}
            upstream.process.stop()  # the videos are the gateway's own now
            for run in runs[:3]:
                [url] = run["output"]["urls"]
                assert url.startswith(gateway.base_url + "/")
                video = tmp_path / f"{run['id']}.mp4"
                video.write_bytes(client.get(url).content)
                info = probe(video)
                assert info.video is not None and (info.video.width, info.video.height) == (
                    864,
                    496,
                )
    finally:
        gateway.stop()

    # One upstream run per gateway run, each made once, and what it cost recorded.
    admin = Admin(make_settings(tmp_path / "gateway"))
    table = UpstreamAttemptRow.__table__
    made = upstream.admin.runs()
    assert len(made) == RUNS and {run.status for run in made} == {"succeeded"}
    for run_id in run_ids:
        [attempt] = admin.select(table, table.c.run_id == run_id)
        [upstream_run] = [r for r in made if r.id == attempt.task_id]
        assert attempt.cost_micros == upstream_run.cost_micros
    # The upstream called the gateway back, signed, for every run.
    deliveries = upstream.admin.select(WebhookDeliveryRow.__table__)
    assert len(deliveries) == RUNS and {d.status for d in deliveries} == {"delivered"}
    assert all(d.url.startswith(f"http://127.0.0.1:{port}/providers/runbase/") for d in deliveries)
    # Money, on both sides: the gateway's user paid the gateway's price, the gateway's
    # account at the upstream paid the upstream's.
    [account] = {run.account_id for run in admin.runs()}
    admin.check_books(account)
    upstream.admin.check_books(upstream.account_id)
    upstream_spent = sum(run.cost_micros for run in made)
    assert upstream.admin.balance(upstream.account_id) == 100_000_000 - upstream_spent
