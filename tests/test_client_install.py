"""`pip install runbase` (no extras) is the client alone, and it works on its own.

The package is built from this checkout into a wheel, then installed into a fresh virtual
environment with pip, its dependencies from the package index, as a user's app would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from runbase.commands import SERVER_COMMANDS
from support import LiveServer

ROOT = Path(__file__).resolve().parents[1]
# What the server needs and the client must not drag in (the `server` extra and its deps;
# pydantic is not among them: typer itself needs it).
SERVER_PACKAGES = {
    "fastapi", "starlette", "uvicorn", "sqlalchemy", "alembic", "pydantic-settings",
    "limits", "python-ulid", "av", "numpy", "pillow", "pyloudnorm", "scipy", "pypinyin",
    "pykakasi", "prometheus-client",
}  # fmt: skip


def test_server_commands_are_listed_for_the_client_only_install() -> None:
    from runbase.cli import app

    names = {command.name or command.callback.__name__ for command in app.registered_commands}
    names |= {group.name for group in app.registered_groups}
    assert names == set(SERVER_COMMANDS)


def _run(*command: str | Path, env: dict[str, str] | None = None, cwd: Path | None = None) -> str:
    result = subprocess.run(
        [str(part) for part in command],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=cwd,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


@pytest.mark.slow
def test_the_package_without_extras_is_the_client(
    tmp_path: Path, start_server: Callable[..., LiveServer]
) -> None:
    source = tmp_path / "source"  # a copy, so that the build leaves the checkout alone
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(
        ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    wheels = tmp_path / "wheels"
    _run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", wheels, source)  # fmt: skip
    [wheel] = wheels.glob("runbase-*.whl")

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", venv)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    python, runbase = venv / "bin" / "python", venv / "bin" / "runbase"
    _run(python, "-m", "pip", "install", "--quiet", "--no-compile", "--disable-pip-version-check",
         wheel, env=env)  # fmt: skip

    installed = json.loads(_run(python, "-m", "pip", "list", "--format", "json", env=env))
    names = {package["name"].lower().replace("_", "-") for package in installed}
    assert {"runbase", "httpx", "typer", "rich"} <= names
    assert not names & SERVER_PACKAGES, names & SERVER_PACKAGES

    _run(python, "-c", "import runbase.client, runbase.client.cli", env=env)
    assert "Generate a video" in _run(runbase, "generate", "--help", env=env)
    for command in (["serve"], ["keys", "create", "--account", "acme"]):
        refused = subprocess.run(
            [runbase, *command], capture_output=True, text=True, env=env, timeout=60
        )
        assert refused.returncode == 1
        assert refused.stderr.strip().splitlines() == [
            f"runbase {command[0]} needs the server: pip install 'runbase[server]'"
        ]

    # The client commands work against a live server with nothing but the client installed.
    server = start_server()
    env |= {"RUNBASE_API_KEY": server.new_key(), "RUNBASE_BASE_URL": server.base_url}
    _run(runbase, "generate", "A red kite", "--resolution", "480p", "-o", "kite.mp4",
         env=env, cwd=tmp_path)  # fmt: skip
    assert (tmp_path / "kite.mp4").stat().st_size > 1000
    assert "succeeded" in _run(runbase, "runs", "list", env=env)
