"""The admin commands, run as a user runs them: `python -m runbase ...` in a subprocess."""

from __future__ import annotations

import json
import os
import re
import shlex
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from support import database_env


def runbase(data_dir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "runbase", *args, "--data-dir", str(data_dir)]
    env = {**os.environ, **database_env(data_dir)}
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, env=env)
    if check:
        assert result.returncode == 0, result.stderr
    return result


def as_json(data_dir: Path, *args: str) -> Any:
    return json.loads(runbase(data_dir, *args, "--json").stdout)


@pytest.mark.slow
def test_accounts_credits_and_keys(tmp_path: Path) -> None:
    account = as_json(tmp_path, "accounts", "create", "acme", "--balance-usd", "2.5")
    assert account["name"] == "acme" and account["balanceMicroUsd"] == 2_500_000
    assert (
        as_json(tmp_path, "credits", "add", "acme", "--usd", "0.75")["balanceMicroUsd"] == 3_250_000
    )

    key = as_json(
        tmp_path,
        "keys", "create", "--account", "acme", "--name", "prod",
        "--spend-limit-cents", "500", "--allow-ip", "203.0.113.7",
        "--allow-ip", "2001:db8::/32", "--daily-run-quota", "100",
    )  # fmt: skip
    assert key["key"].startswith("sk-") and len(key["key"]) == 43
    assert key["spendLimitCents"] == 500 and key["dailyRunQuota"] == 100
    assert key["allowedIps"] == ["203.0.113.7/32", "2001:db8::/32"]

    listed = as_json(tmp_path, "keys", "list", "--account", "acme")["keys"]
    assert [k["id"] for k in listed] == [key["id"]]
    assert key["key"] not in json.dumps(listed)  # secrets are never stored or shown again
    assert listed[0]["prefix"] == key["key"][:10]

    assert as_json(tmp_path, "keys", "disable", key["id"])["enabled"] is False
    shown = as_json(tmp_path, "accounts", "show", "acme")
    assert shown["balanceMicroUsd"] == 3_250_000 and shown["keys"][0]["enabled"] is False
    assert as_json(tmp_path, "keys", "enable", key["id"])["enabled"] is True

    plain = runbase(tmp_path, "keys", "create", "--account", "acme").stdout.strip()
    assert plain.startswith("sk-") and "\n" not in plain


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("accounts", "show", "nobody"), "no account named 'nobody'"),
        (("credits", "add", "nobody", "--usd", "1"), "no account named 'nobody'"),
        (("keys", "create", "--account", "acme", "--allow-ip", "not-an-ip"), "not an IP"),
        (("keys", "disable", "key_missing"), "no key with id"),
        (("credits", "add", "acme", "--usd", "-1"), "must be positive"),
    ],
)
def test_usage_errors_exit_2_with_a_message(
    tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    runbase(tmp_path, "accounts", "create", "acme")
    result = runbase(tmp_path, *args, check=False)
    assert result.returncode == 2
    assert message in result.stderr


def _serve_until_listening(data_dir: Path, port: int) -> str:
    """Start `runbase serve`, read what it prints until it listens, and stop it."""
    command = [sys.executable, "-m", "runbase", "serve", "--port", str(port)]
    command += ["--data-dir", str(data_dir)]
    env = {**os.environ, **database_env(data_dir), "RUNBASE_WORKERS": "0"}
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    printed = []
    try:
        for line in process.stdout:
            printed.append(line)
            if "serving on" in line:
                break
    finally:
        process.terminate()
        process.wait(timeout=30)
    return "".join(printed)


@pytest.mark.slow
def test_a_restart_prints_the_command_that_makes_a_key(tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    first = _serve_until_listening(tmp_path, port)
    assert re.search(r"export RUNBASE_API_KEY=sk-\w{40}", first)
    second = _serve_until_listening(tmp_path, port)
    assert "RUNBASE_API_KEY=sk-" not in second
    [hint] = [line.strip() for line in second.splitlines() if "keys create" in line]
    assert hint == f"runbase keys create --account default --data-dir {tmp_path}"
    # The command works as printed (here through `python -m`, as `runbase` is not on PATH).
    made = runbase(tmp_path, *shlex.split(hint)[1:-2])
    assert made.stdout.startswith("sk-")
