"""The request headers that change a create: `Prefer: wait` and `Cancel-After`.

(`Idempotency-Key` is checked in `core.idempotency`; `X-Request-Id` by the middleware.)
"""

from __future__ import annotations

import re
from typing import Final

from runbase.errors import InvalidRequest

MAX_WAIT_SECONDS: Final = 60
MAX_CANCEL_AFTER_SECONDS: Final = 24 * 3600
_DURATION_PART: Final = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")
_UNIT_SECONDS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


def wait_seconds(prefer: str | None) -> int | None:
    """The `wait` preference of a `Prefer` header (RFC 7240), capped at 60 s; None if absent.

    `wait` alone means the most we allow. A preference we cannot read is ignored, as the
    RFC asks, rather than refused.
    """
    if not prefer:
        return None
    for preference in prefer.split(","):
        token = preference.split(";", 1)[0].strip()
        name, has_value, value = token.partition("=")
        if name.strip().lower() != "wait":
            continue
        if not has_value:
            return MAX_WAIT_SECONDS
        value = value.strip().strip('"')
        if value.isdigit():
            return min(int(value), MAX_WAIT_SECONDS)
    return None


def cancel_after_ms(header: str | None) -> int | None:
    """`Cancel-After` as milliseconds: `90s`, `10m`, `1h30m`, `1500ms`, or bare seconds."""
    if header is None:
        return None
    text = header.strip().lower()
    seconds: float | None = None
    if re.fullmatch(r"\d+(?:\.\d+)?", text):
        seconds = float(text)
    elif text and re.fullmatch(rf"(?:{_DURATION_PART.pattern})+", text):
        seconds = sum(
            float(number) * _UNIT_SECONDS[unit] for number, unit in _DURATION_PART.findall(text)
        )
    if seconds is None or not 1 <= seconds <= MAX_CANCEL_AFTER_SECONDS:
        raise InvalidRequest(
            "Cancel-After must be a duration from 1 second to 24 hours, such as 90s, 10m or 1h30m"
        )
    return round(seconds * 1000)
