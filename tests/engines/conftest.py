"""Fixtures of the engine tests."""

from __future__ import annotations

from typing import Any

import pytest


@pytest.fixture(scope="module")
def tiny_pipeline() -> Any:
    """A tiny random-weight LTX2Pipeline (ltx2_tiny.py), one per test module."""
    pytest.importorskip("diffusers", reason="the LTX-2 engine needs the ltx2 extra")
    from diffusers import LTX2Pipeline
    from ltx2_tiny import tiny_components

    return LTX2Pipeline(**tiny_components())
