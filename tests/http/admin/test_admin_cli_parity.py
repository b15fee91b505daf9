"""The command line and the admin API are one implementation: the same refusals with the
same messages, one audit log, one admin token."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import AdminServer
from support import database_env

pytestmark = pytest.mark.slow


def runbase(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "runbase", *args, "--data-dir", str(data_dir)]
    env = {**os.environ, **database_env(data_dir)}
    return subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)


CASES = [
    (("accounts", "show", "nobody"), ("GET", "/accounts/nobody", None)),
    (("credits", "add", "nobody", "--usd", "1"), ("POST", "/accounts/nobody/credits", {"usd": 1})),
    (("credits", "add", "acme", "--usd", "-1"), ("POST", "/accounts/acme/credits", {"usd": -1})),
    (("accounts", "create", "acme"), ("POST", "/accounts", {"name": "acme"})),
    (
        ("keys", "create", "--account", "acme", "--allow-ip", "not-an-ip"),
        ("POST", "/keys", {"account": "acme", "allowedIps": ["not-an-ip"]}),
    ),
    (
        ("keys", "create", "--account", "acme", "--rate-limit", "lots"),
        ("POST", "/keys", {"account": "acme", "rateLimit": "lots"}),
    ),
    (("keys", "disable", "key_missing"), ("POST", "/keys/key_missing/disable", None)),
]


def test_the_same_refusals_with_the_same_messages(
    admin_server: Callable[..., AdminServer],
) -> None:
    admin = admin_server(workers=0)
    data_dir = admin.server.settings.data_dir
    assert admin.api.post("/accounts", json={"name": "acme"}).status_code == 201
    for args, (method, path, body) in CASES:
        cli = runbase(data_dir, *args)
        api = admin.api.request(method, path, json=body)
        assert cli.returncode == 2 and api.status_code in (400, 404, 409), (args, api.text)
        error = api.json()["error"]
        if "fields" in error:  # each surface names the field its own way: --usd, usd
            [problem] = error["fields"].values()
            assert cli.stderr.strip().endswith(f": {problem}"), (args, cli.stderr)
        else:
            assert cli.stderr.strip() == f"error: {error['message']}", (args, cli.stderr)


def test_one_audit_log_and_one_token(admin_server: Callable[..., AdminServer]) -> None:
    admin = admin_server(workers=0)
    data_dir = admin.server.settings.data_dir
    assert runbase(data_dir, "accounts", "create", "acme").returncode == 0
    assert (
        runbase(data_dir, "credits", "add", "acme", "--usd", "2", "--note", "po 7").returncode == 0
    )
    [credit, create] = admin.api.get("/audit").json()["data"]
    assert (create["action"], credit["action"]) == ("account.create", "credits.add")
    assert credit["actor"].startswith("cli:") and credit["address"] is None
    assert credit["details"] == {"amountMicroUsd": 2_000_000, "note": "po 7"}
    ledger = admin.api.get("/accounts/acme").json()["ledger"]
    assert ledger[0]["note"] == "po 7"
    printed = runbase(data_dir, "admin", "token")
    assert printed.returncode == 0 and printed.stdout.strip() == admin.token
