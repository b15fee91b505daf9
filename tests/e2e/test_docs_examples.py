"""The examples of README.md and docs/, run as written against a live runbase on 127.0.0.1.

Every ```python block, and every ```sh block that calls the API (`curl`, or a client
command of `runbase`), runs in a scratch directory the way a reader runs it after
`make serve`: `RUNBASE_API_KEY` exported, `runbase` on the PATH. Three placeholders are
filled in as the reader fills them in: the key `sk-...`, `RUN_ID` (a run made just
before), and the server's address `http://127.0.0.1:8000` (this server has another port).
Each examples/*.py must be shown whole in README.md or docs/, and runs with a first frame.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from support import SEEDANCE, LiveServer

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
DOCUMENTED_ADDRESS = "http://127.0.0.1:8000"
CLIENT_LINE = re.compile(r"^\s*(curl |runbase (generate|runs|models|account)\b)", re.MULTILINE)


@dataclass(frozen=True)
class Block:
    where: str  # "README.md:24"
    language: str
    text: str


def code_blocks() -> list[Block]:
    blocks = []
    for document in DOCUMENTS:
        text = document.read_text()
        for match in re.finditer(r"^```(\w*)\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL):
            line = text.count("\n", 0, match.start()) + 1
            where = f"{document.relative_to(ROOT)}:{line}"
            blocks.append(Block(where, match.group(1), match.group(2)))
    return blocks


def runnable_blocks() -> list[Block]:
    examples = {path.read_text() for path in EXAMPLES}
    return [
        block
        for block in code_blocks()
        if (block.language == "python" and block.text not in examples)
        or (block.language == "sh" and CLIENT_LINE.search(block.text))
    ]


def test_the_examples_are_shown_whole() -> None:
    shown = {block.text for block in code_blocks() if block.language == "python"}
    assert EXAMPLES, "examples/ is empty"
    for path in EXAMPLES:
        assert path.read_text() in shown, f"{path.name} is not shown whole in README or docs"
    # The blocks this test runs: the quick start, the SDK, the command line at least.
    assert len(runnable_blocks()) >= 3


class Reader:
    """A reader's shell after `make serve`: a key exported, `runbase` on the PATH."""

    def __init__(self, server: LiveServer, home: Path) -> None:
        self.server = server
        self.home = home
        account = server.admin.create_account("reader", balance_usd=100.0)
        self.key = server.admin.create_key(account)
        # RUN_ID is made and waited for with another key of the account, so that the
        # example keeps its key's whole rate-limit budget.
        self._helper_key = server.admin.create_key(account)
        bin_dir = home / "bin"
        bin_dir.mkdir()
        shim = bin_dir / "runbase"  # what `.venv/bin/runbase` does, for this checkout
        shim.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m runbase "$@"\n')
        shim.chmod(0o755)
        self.env = {
            **os.environ,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
            "RUNBASE_API_KEY": self.key,
            "RUNBASE_BASE_URL": server.base_url,
            # The reader's shell sits beside the server's data (`./runbase-data` after
            # `make serve`), where the server commands (`runbase admin token`) find it.
            "RUNBASE_DATA_DIR": str(server.settings.data_dir),
        }
        # The images the examples name.
        Image.new("RGB", (720, 1280), (200, 120, 40)).save(home / "first.png")
        Image.new("RGB", (1280, 720), (40, 120, 200)).save(home / "first-frame.png")

    def fill_in(self, text: str) -> str:
        text = text.replace(DOCUMENTED_ADDRESS, self.server.base_url).replace("sk-...", self.key)
        if "RUN_ID" in text:
            with self.server.client(self._helper_key) as client:
                body = {"model": SEEDANCE, "input": {"prompt": "A lamp", "resolution": "480p"}}
                run_id = client.post("/api/v1/runs", json=body).json()["id"]
            self.server.wait_for_run(self._helper_key, run_id)
            text = text.replace("RUN_ID", run_id)
        return text

    def run(self, *command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            command, cwd=self.home, env=self.env, capture_output=True, text=True, timeout=180
        )


@pytest.fixture
def reader(start_server: Callable[..., LiveServer], tmp_path: Path) -> Reader:
    return Reader(start_server(), tmp_path)


@pytest.mark.parametrize("block", runnable_blocks(), ids=lambda block: block.where)
def test_documented_example_runs_as_written(reader: Reader, block: Block) -> None:
    script = reader.home / ("example.py" if block.language == "python" else "example.sh")
    script.write_text(reader.fill_in(block.text))
    if block.language == "python":
        result = reader.run(sys.executable, str(script))
    else:
        result = reader.run("bash", "-euo", "pipefail", str(script))
    assert result.returncode == 0, f"{block.where}\n{result.stdout}\n{result.stderr}"
    # curl exits 0 on an HTTP error: the answers must not be error envelopes.
    assert '"error": {' not in result.stdout and '"error":{' not in result.stdout, result.stdout


@pytest.mark.parametrize("example", EXAMPLES, ids=lambda path: path.name)
def test_example_script_runs_against_a_live_server(reader: Reader, example: Path) -> None:
    result = reader.run(sys.executable, str(example), "first-frame.png")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "saved boat.mp4" in result.stdout
    assert (reader.home / "boat.mp4").stat().st_size > 1000
    [run] = reader.server.admin.runs()
    assert run.status == "succeeded" and len(run.input["image_urls"]) == 1
