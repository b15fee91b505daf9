"""Test-mode keys over real HTTP: the preview engine, the test balance, failure markers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable

import pytest

from runbase.core.billing import TEST_TOP_UP_MICROS
from support import SEEDANCE, LiveServer, database_env


def body(prompt: str = "A lamp") -> dict[str, object]:
    return {
        "model": SEEDANCE,
        "input": {"prompt": prompt, "resolution": "480p", "generate_audio": False},
    }


def test_a_test_key_runs_on_the_preview_engine_and_the_test_balance(
    start_server: Callable[..., LiveServer],
) -> None:
    server = start_server()  # real runs use the quick fixture engine, test runs the preview
    account = server.admin.create_account("acme", 0.0)  # no money at all
    command = [sys.executable, "-m", "runbase", "keys", "create", "--account", "acme", "--test"]
    command += ["--json", "--data-dir", str(server.settings.data_dir)]
    created = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, **database_env(server.settings.data_dir)},
    )
    key = json.loads(created.stdout)
    assert key["key"].startswith("sk-test-") and key["isTest"] is True
    secret = key["key"]
    with server.client(secret) as client:
        run = client.post("/api/v1/runs", json=body()).json()
        assert run["costUsd"] > 0
        done = server.wait_for_run(secret, run["id"], timeout=120)
        assert done["status"] == "succeeded", done
        assert done["backend"] == "preview"
        me = client.get("/api/v1/account").json()
    assert me["key"]["isTest"] is True and me["key"]["spentUsd"] == 0
    assert me["account"]["balanceUsd"] == 0
    assert me["account"]["testBalanceUsd"] == TEST_TOP_UP_MICROS - run["costUsd"]
    server.admin.check_books(account)


@pytest.mark.parametrize("code", ["invalid_image", "generation_failed", "timeout"])
def test_failure_markers_fail_test_runs_on_purpose(
    start_server: Callable[..., LiveServer], code: str
) -> None:
    server = start_server(test_engine="engine_fixtures:QuickEngine")
    account = server.admin.create_account("acme", 1.0)
    test_key = server.admin.create_key(account, is_test=True)
    live_key = server.admin.create_key(account)
    prompt = f"A lamp [fail:{code}] on a desk"
    with server.client(test_key) as client:
        run_id = client.post("/api/v1/runs", json=body(prompt)).json()["id"]
    failed = server.wait_for_run(test_key, run_id)
    assert failed["status"] == "failed"
    assert failed["error"]["code"] == code
    assert "on purpose" in failed["error"]["message"]
    # In a live key's run the marker is only words.
    with server.client(live_key) as client:
        live_id = client.post("/api/v1/runs", json=body(prompt)).json()["id"]
    live = server.wait_for_run(live_key, live_id)
    assert live["status"] == "succeeded"
    # The test run was charged and refunded on the test ledger; real money moved only once.
    test_entries = [e for e in server.admin.ledger(account) if e.run_id == run_id]
    assert sorted(e.kind for e in test_entries) == ["charge", "refund"]
    assert {e.book for e in test_entries} == {"test"}
    assert server.admin.balance(account) == 1_000_000 - live["costUsd"]
    server.admin.check_books(account)


def test_the_test_balance_never_runs_out(start_server: Callable[..., LiveServer]) -> None:
    server = start_server(workers=0)
    account = server.admin.create_account("acme", 0.0)
    key = server.admin.create_key(account, is_test=True, spend_limit_cents=1)
    expensive = {
        "model": SEEDANCE,
        "input": {"prompt": "x", "resolution": "1080p", "duration": "12"},
    }
    with server.client(key) as client:
        costs = [client.post("/api/v1/runs", json=expensive).json()["costUsd"] for _ in range(3)]
    # 1,000 test dollars top up, and again whenever a run would take it below zero.
    assert all(cost > 0 for cost in costs)
    server.admin.check_books(account)
    assert server.admin.balance(account) == 0
