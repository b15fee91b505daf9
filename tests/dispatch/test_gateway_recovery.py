"""A run whose worker died between a submit and its record: the next holder reads the
attempt from the database. Without an idempotency key the run is failed and refunded, never
submitted again; with one, it is submitted again with the same key and the provider answers
with the task it already has (one upstream task, paid once).

The dead worker is reproduced exactly: its claim and its `submitting` attempt are written
with the same functions a worker uses, its lease already expired; then a server starts on
the same database and its reaper and gateway take over.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from fakes.modelark import FakeModelArk
from provider_fixtures import KeyedArk
from provider_routes import ARK_KEY
from runbase.core import attempts, claims
from runbase.storage.db import Database
from runbase.storage.tables import UpstreamAttemptRow
from support import SEEDANCE, LiveServer


@pytest.fixture
def fake(ark: FakeModelArk, monkeypatch: pytest.MonkeyPatch) -> FakeModelArk:
    """The fake ModelArk, serving the ark-b providers of provider_fixtures too."""
    monkeypatch.setenv("RUNBASE_TEST_ARK_B_BASE_URL", ark.base_url + "/api/v3")
    return ark


def settings_for(fake: FakeModelArk, engines: list[str], **overrides: Any) -> dict[str, Any]:
    return {
        "engines": engines,
        "ark_base_url": fake.base_url + "/api/v3",
        "ark_api_key": ARK_KEY,
        "ark_allow_private_hosts": True,
        "ark_poll_interval_seconds": 0.05,
        "ark_max_poll_interval_seconds": 0.2,
        "lease_seconds": 1.0,
        "rate_limit": "1000/10seconds",
        **overrides,
    }


def interrupted_submit(server: LiveServer, key: str, provider: str) -> str:
    """A run claimed by a worker that then died while submitting it to `provider`."""
    body = {"model": SEEDANCE, "input": {"prompt": "a storm", "resolution": "480p"}}
    with server.client(key) as client:
        run_id = str(client.post("/api/v1/runs", json=body).json()["id"])
    database = Database(server.settings.resolved_database_url)
    try:
        with database.transaction() as connection:
            [run] = claims.claim_runs(
                connection, worker_id="wrk_dead", lease_ms=-1, is_postgres=not database.is_sqlite
            )
            assert run.id == run_id
            begun = attempts.begin_attempt(
                connection, run_id, provider=provider, worker_id="wrk_dead"
            )
            assert begun is not None and begun.state == "submitting"
    finally:
        database.dispose()
    return run_id


def test_without_an_idempotency_key_an_interrupted_submit_is_never_repeated(
    start_server: Callable[..., LiveServer], fake: FakeModelArk
) -> None:
    server = start_server(**settings_for(fake, ["ark"], workers=0))
    key = server.new_key()
    run_id = interrupted_submit(server, key, "ark")
    server.stop()

    server = start_server(**settings_for(fake, ["ark", "provider_fixtures:ArkB"]))
    run = server.wait_for_run(key, run_id, timeout=30)
    assert run["status"] == "failed", run
    assert "not submitted again" in run["error"]["message"]
    assert fake.creates == []  # neither ark nor ark-b (same fake) was asked
    table = UpstreamAttemptRow.__table__
    [attempt] = server.admin.select(table, table.c.run_id == run_id)
    assert (attempt.state, attempt.error_class) == ("uncertain", "submit_uncertain")
    [row] = [r for r in server.admin.runs() if r.id == run_id]
    server.admin.check_books(row.account_id)
    assert server.admin.balance(row.account_id) == 10_000_000


def test_with_an_idempotency_key_an_interrupted_submit_is_replayed(
    start_server: Callable[..., LiveServer], fake: FakeModelArk
) -> None:
    fake.idempotency_header = KeyedArk.HEADER
    engines = ["provider_fixtures:KeyedArk"]
    server = start_server(**settings_for(fake, engines, workers=0))
    key = server.new_key()
    run_id = interrupted_submit(server, key, "keyed-ark")
    # The dead worker's submit had reached the provider: the task exists upstream.
    body = {"model": "seedance-1-5-pro-251215", "content": [{"type": "text", "text": "x"}]}
    body |= {"resolution": "480p", "duration": 4, "generate_audio": True}
    created = httpx.post(
        fake.base_url + "/api/v3/contents/generations/tasks",
        json=body,
        headers={"Authorization": f"Bearer {ARK_KEY}", KeyedArk.HEADER: run_id},
    )
    task_id = created.json()["id"]
    server.stop()

    server = start_server(**settings_for(fake, engines))
    run = server.wait_for_run(key, run_id, timeout=30)
    assert run["status"] == "succeeded", run
    assert len(fake.creates) == 1  # the replay answered the same task
    table = UpstreamAttemptRow.__table__
    [attempt] = server.admin.select(table, table.c.run_id == run_id)
    assert attempt.state == "succeeded" and attempt.task_id == task_id
    assert any("same idempotency key" in line for line in run["logs"]), run["logs"]
    [row] = [r for r in server.admin.runs() if r.id == run_id]
    server.admin.check_books(row.account_id)
