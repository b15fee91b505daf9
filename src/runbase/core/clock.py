"""Time as runbase stores it: integer milliseconds since the epoch, UTC."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from ulid import ULID


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def format_timestamp(ms: int | None) -> str | None:
    """ISO-8601 UTC with milliseconds and `Z`, as the contract shows: 2026-06-01T12:00:04.200Z."""
    if ms is None:
        return None
    moment = datetime.fromtimestamp(ms / 1000, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def new_id(prefix: str) -> str:
    """`prefix_` + a lowercase ULID: random, and sortable by creation time."""
    return f"{prefix}_{str(ULID()).lower()}"
