"""`Runbase` (the blocking client) is generated from `AsyncRunbase`: never edited by hand."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "unasync.py"


def test_the_blocking_client_is_generated_from_the_async_one() -> None:
    spec = importlib.util.spec_from_file_location("unasync", SCRIPT)
    assert spec is not None and spec.loader is not None
    unasync = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(unasync)
    generated = unasync.generate(unasync.SOURCE.read_text())
    assert unasync.TARGET.read_text() == generated, "stale: run python scripts/unasync.py"
    assert "await " not in generated and "async def" not in generated
