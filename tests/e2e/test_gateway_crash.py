"""The gateway's crash test: 200 runs in flight across two kinds of provider (ModelArk and
fal), SIGKILL of the whole server (its process group), restart. Every run ends; no run is
created upstream twice (the fakes count creates by prompt, one prompt per run); every run
that succeeded was made by the task it was first given; balances and ledger are exact.

Providers are listed in `PROVIDERS`, one entry per kind: how to start its fake, the
settings that point runbase at it, and which prompts it was asked to make. Add a kind (a
Replicate fake) by adding an entry; the route is the list, in order.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from fakes.common import FakeServer
from fakes.fal import FakeFal
from fakes.modelark import FakeModelArk
from provider_routes import ARK_KEY, FAL_KEY
from runbase.storage.tables import UpstreamAttemptRow
from server_process import ServerProcess, free_port
from support import SEEDANCE, Admin, make_settings

TESTS_DIR = Path(__file__).resolve().parents[1]
RUNS = 200
Started = tuple[dict[str, str], Callable[[], list[str]]]


@dataclass
class ProviderKind:
    """One provider of the route, with its fake."""

    engine: str
    """Its name in RUNBASE_ENGINES."""
    start: Callable[[pytest.FixtureRequest, int], Started]
    """Start the fake, for `slots` runs in flight and until the test ends: answers
    (environment for runbase, prompts it was asked)."""


def _ark(request: pytest.FixtureRequest, slots: int) -> Started:
    start_ark: Callable[..., FakeModelArk] = request.getfixturevalue("start_ark")
    fake = start_ark(queued_seconds=1.0, running_seconds=4.0)
    env = {
        "RUNBASE_ARK_BASE_URL": fake.base_url + "/api/v3",
        "RUNBASE_ARK_API_KEY": ARK_KEY,
        "RUNBASE_ARK_ALLOW_PRIVATE_HOSTS": "true",
        "RUNBASE_ARK_POLL_INTERVAL_SECONDS": "0.5",
        "RUNBASE_ARK_MAX_POLL_INTERVAL_SECONDS": "1",
        "RUNBASE_ARK_MAX_IN_FLIGHT": str(slots),
    }

    def prompts() -> list[str]:
        return [str(body["content"][0]["text"]) for body in fake.creates]

    return env, prompts


def _fal(request: pytest.FixtureRequest, slots: int) -> Started:
    videos = request.getfixturevalue("tmp_path") / "fake-videos"
    fake = FakeFal(FAL_KEY, videos, queue_seconds=1.0, run_seconds=4.0)
    server = FakeServer(fake, tick_s=0.2)
    queue_url = server.start()
    request.addfinalizer(server.stop)
    env = {
        "RUNBASE_FAL_QUEUE_URL": queue_url,
        "RUNBASE_FAL_KEY": FAL_KEY,
        "RUNBASE_FAL_ALLOW_PRIVATE_HOSTS": "true",
        "RUNBASE_FAL_POLL_INTERVAL_SECONDS": "0.5",
        "RUNBASE_FAL_MAX_POLL_INTERVAL_SECONDS": "1",
        "RUNBASE_FAL_MAX_IN_FLIGHT": str(slots),
    }

    def prompts() -> list[str]:
        return [str(create["input"]["prompt"]) for create in fake.creates]

    return env, prompts


PROVIDERS = [ProviderKind("ark", _ark), ProviderKind("fal", _fal)]


def server_env(env: dict[str, str]) -> dict[str, str]:
    return {
        **env,
        "RUNBASE_ENGINES": ",".join(kind.engine for kind in PROVIDERS),
        "RUNBASE_LEASE_SECONDS": "2",
        "RUNBASE_ACCESS_LOG": "false",
        "RUNBASE_STARTING_BALANCE_USD": "1000",
    }


@pytest.fixture
def fakes(request: pytest.FixtureRequest) -> tuple[dict[str, str], list[Callable[[], list[str]]]]:
    env: dict[str, str] = {}
    prompts = []
    for kind in PROVIDERS:
        kind_env, kind_prompts = kind.start(request, RUNS // len(PROVIDERS))
        env |= kind_env
        prompts.append(kind_prompts)
    return env, prompts


async def create_all(base_url: str, key: str) -> list[str]:
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=20)
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, limits=limits, timeout=30
    ) as client:

        async def one(index: int) -> str:
            body = {
                "model": SEEDANCE,
                "input": {
                    "prompt": f"crash run {index}",
                    "resolution": "480p",
                    "generate_audio": False,
                },
            }
            response = await client.post("/api/v1/runs", json=body)
            assert response.status_code == 200, response.text
            return str(response.json()["id"])

        return list(await asyncio.gather(*(one(i) for i in range(RUNS))))


@pytest.mark.slow
def test_sigkill_with_200_runs_in_flight_at_two_kinds_of_provider(
    tmp_path: Path, fakes: tuple[dict[str, str], list[Callable[[], list[str]]]]
) -> None:
    env, prompts_of = fakes
    data_dir, port = tmp_path / "data", free_port()
    server = ServerProcess(data_dir, port, server_env(env))
    try:
        key = server.printed_key
        assert key is not None
        run_ids = asyncio.run(create_all(server.base_url, key))
        deadline = time.monotonic() + 60
        while sum(len(p()) for p in prompts_of) < RUNS:  # all are upstream
            assert time.monotonic() < deadline, [len(p()) for p in prompts_of]
            time.sleep(0.05)
        assert all(len(p()) > 0 for p in prompts_of)  # both providers carry runs
        server.kill()
    finally:
        server.stop()

    server = ServerProcess(data_dir, port, server_env(env))
    try:
        headers = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=server.base_url, headers=headers, timeout=30) as client:
            deadline = time.monotonic() + 120
            while True:
                runs = [client.get(f"/api/v1/runs/{r}").json() for r in run_ids]
                if all(run["status"] in ("succeeded", "failed", "canceled") for run in runs):
                    break
                assert time.monotonic() < deadline, Counter(run["status"] for run in runs)
                time.sleep(0.5)
    finally:
        server.stop()

    creates = Counter(prompt for prompts in prompts_of for prompt in prompts())
    assert max(creates.values()) == 1, creates.most_common(3)  # never created twice
    by_status = Counter(run["status"] for run in runs)
    failures = Counter(str(run["error"]["message"])[:90] for run in runs if run["error"])
    # Only a run whose create was answered but not yet recorded when the server died may
    # fail (refunded): a create is never repeated without an idempotency key.
    assert by_status["succeeded"] >= RUNS * 9 // 10, (by_status, failures)
    admin = Admin(make_settings(data_dir))
    table = UpstreamAttemptRow.__table__
    for run in runs:
        attempts = admin.select(table, table.c.run_id == run["id"])
        if run["status"] == "succeeded":  # made by the one task it was given
            [attempt] = [a for a in attempts if a.state == "succeeded"]
            assert creates[f"crash run {run_ids.index(run['id'])}"] == 1
            assert run["backend"] == attempt.provider
        else:  # interrupted mid-submit: failed rather than paid twice
            assert "not submitted again" in run["error"]["message"], run
            assert [a.state for a in attempts] == ["uncertain"]
    [row] = admin.runs()[:1]
    admin.check_books(row.account_id)
    spent = sum(r.cost_micros for r in admin.runs() if r.status == "succeeded")
    assert admin.balance(row.account_id) == 1000 * 1_000_000 - spent
