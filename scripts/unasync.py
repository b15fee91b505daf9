#!/usr/bin/env python3
"""Generate the SDK's blocking client from its asyncio one, so that the two cannot drift.

    python scripts/unasync.py          rewrite src/runbase/client/_client.py
    python scripts/unasync.py --check  exit 1 if it is stale (tests/client/test_unasync.py)

`_async_client.py` is the implementation. The blocking face is the same code with
`async`/`await` dropped and the asyncio names swapped for their blocking twins (a fixed
table of whole-word substitutions, below), then formatted by ruff. The same approach as
httpcore's, written for this one file.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "src/runbase/client/_async_client.py"
TARGET = ROOT / "src/runbase/client/_client.py"

HEADER = '''"""`Runbase`: the blocking client. GENERATED from `_async_client.py`: do not edit.

Change `_async_client.py` and run `python scripts/unasync.py`; a test fails when this file
is stale. The two faces share every line of logic, so they cannot drift.
"""
'''

# Whole-word substitutions, in order. `AsyncRunbase` -> `Runbase`, `AsyncRun` -> `Run`,
# `httpx.AsyncClient` -> `httpx.Client`: every `Async` name has a blocking twin.
SUBSTITUTIONS: tuple[tuple[str, str], ...] = (
    (r"^import asyncio\n", ""),
    (r"\bAsync([A-Z]\w*)", r"\1"),
    (r"\basync def\b", "def"),
    (r"\basync with\b", "with"),
    (r"\basync for\b", "for"),
    (r"\bawait ", ""),
    (r"\b__aenter__\b", "__enter__"),
    (r"\b__aexit__\b", "__exit__"),
    (r"\basyncio\.sleep\b", "time.sleep"),
    (r"\baclose\b", "close"),
    (r"\baread\b", "read"),
    (r"\baiter_bytes\b", "iter_bytes"),
)


def generate(source: str) -> str:
    """The blocking module for the text of the asyncio one."""
    docstring = re.match(r'"""(.*?)"""\n', source, flags=re.DOTALL)
    if docstring is None:
        raise ValueError("the asyncio client must start with its module docstring")
    body = source[docstring.end() :]
    for pattern, replacement in SUBSTITUTIONS:
        body = re.sub(pattern, replacement, body, flags=re.MULTILINE)
    if re.search(r"\b(async|await|asyncio)\b", body):
        raise ValueError("an asyncio construct has no blocking twin in SUBSTITUTIONS")
    return _format(HEADER + body)


def _format(text: str) -> str:
    """Imports sorted again (`AsyncRun` became `Run`), then formatted, as scripts/check wants."""
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    for command in (["check", "--select", "I", "--fix-only", "--exit-zero"], ["format"]):
        text = subprocess.run(
            [ruff, *command, "--stdin-filename", str(TARGET), "-"],
            input=text,
            capture_output=True,
            text=True,
            check=True,
            cwd=ROOT,
        ).stdout
    return text


def main(argv: list[str]) -> int:
    generated = generate(SOURCE.read_text())
    if "--check" in argv:
        if TARGET.read_text() != generated:
            stale = TARGET.relative_to(ROOT)
            sys.stderr.write(f"{stale} is stale: run python scripts/unasync.py\n")
            return 1
        return 0
    TARGET.write_text(generated)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
