"""Test mode: what a test key's run may ask for to fail on purpose.

Runs of test keys (`sk-test-...`) go through the whole queue and worker like any other,
on the test engine and the test balance. A marker in the prompt makes the engine process
fail the run with that error code, so that users can exercise their error handling:

    [fail:invalid_image]  [fail:generation_failed]  [fail:timeout]  [fail:upstream_error]

In runs of live keys the markers are ordinary prompt text.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Final

FAILURE_CODES: Final = ("invalid_image", "generation_failed", "timeout", "upstream_error")
_MARKER: Final = re.compile(r"\[fail:(" + "|".join(FAILURE_CODES) + r")\]")


def requested_failure(validated_input: Mapping[str, Any]) -> str | None:
    """The error code that a test run's prompt asks to fail with, if any (the first one)."""
    match = _MARKER.search(str(validated_input.get("prompt", "")))
    return match.group(1) if match else None
