"""Reading what clients send, strictly: the one parser of every surface.

A client's request arrives as bytes and text: a JSON body, headers, query parameters, form
fields, a cursor. Everything that becomes a value goes through here, and what cannot be
read is refused with a `RunbaseError` (each surface answers it in its own envelope), or,
where a standard says so, ignored. Nothing fails open, and no message carries a library's
wording, a path or a traceback.

    parse_json(raw)              a JSON body: at most MAX_JSON_DEPTH deep, integers within
                                 64 bits, no NaN or Infinity, no text that is not Unicode
    parse_int(text, name, ...)   an integer: ASCII digits only, within bounds and 64 bits
    read_int(text)               the same, None when unreadable (headers RFCs say to ignore)
    check_text(text, name)       text that is valid Unicode and holds no NUL
    wait_preference(header)      `Prefer: wait=N` (RFC 7240): an unreadable one is ignored
    cancel_after_ms(header)      `Cancel-After: 90s`
    last_event_id(header)        `Last-Event-ID` of the SSE stream
    byte_ranges(header, size)    `Range: bytes=...` (RFC 9110 section 14.1.2)
    readable(value)              stored text shown safely: lone surrogates become U+FFFD

"Not valid Unicode" means a lone surrogate (U+D800 to U+DFFF): JSON can carry one as a
`\\ud800` escape, and it cannot be encoded as UTF-8, so a run holding one could be neither
answered nor listed. Such text is refused before anything is charged.
"""

from __future__ import annotations

import json
import re
from typing import Any, Final

import numpy as np

from runbase.errors import BadParameter, InvalidJson, RangeNotSatisfiable

MAX_JSON_DEPTH: Final = 32
"""Objects and arrays nested deeper than this are refused (a create needs 4)."""
INT64_MAX: Final = 2**63 - 1
INT64_MIN: Final = -(2**63)
MAX_RANGES: Final = 16
"""A `Range` with more parts than this is ignored (RFC 9110 allows it): the whole file."""

_LONE_SURROGATE: Final = re.compile("[\ud800-\udfff]")
# Where a lone surrogate could come from in a JSON body: a \uD800-\uDFFF escape, or the
# bytes of one in UTF-8 (which the json module decodes with "surrogatepass").
_MAYBE_SURROGATE: Final = re.compile(rb"\\u[dD][89abcdefABCDEF]|\xed[\xa0-\xbf]")
# A string, or what is left of an unterminated one: possessive, and unable to fail once
# started, so that no body (`"\"\"\"...`) makes it retry from every quote: linear time.
_JSON_STRING: Final = re.compile(rb'"[^"\\]*+(?:\\.[^"\\]*+)*+"?', re.DOTALL)
_NOT_BRACKETS: Final = bytes(byte for byte in range(256) if byte not in b"[]{}")
_DEPTH_CHUNK: Final = 1 << 20
_INTEGER: Final = re.compile(r"-?[0-9]{1,19}")  # ASCII digits only: never "²" or "٣"
_DIGITS: Final = re.compile(r"[0-9]+")
_DURATION_PART: Final = r"([0-9]{1,12}(?:\.[0-9]{1,9})?)(ms|s|m|h)"
_DURATION: Final = re.compile(rf"(?:{_DURATION_PART})+")
_SECONDS: Final = re.compile(r"[0-9]{1,12}(?:\.[0-9]{1,9})?")
_UNIT_SECONDS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
MAX_WAIT_SECONDS: Final = 60
MAX_CANCEL_AFTER_SECONDS: Final = 24 * 3600


# ---- JSON bodies ---------------------------------------------------------------------


class _Refused(Exception):
    """A value the JSON hooks refuse (raised through json.loads)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def parse_json(raw: bytes, *, what: str = "the request body") -> Any:
    """The JSON value of `raw`, or `InvalidJson` (400) saying in our words what is wrong.

    Refused: invalid JSON or UTF-8; nesting deeper than `MAX_JSON_DEPTH` (checked on the
    bytes first, so a deep body never reaches the recursive parser); integers outside 64
    bits; NaN, Infinity and numbers too large for a float; text with lone surrogates, in
    keys and values alike.
    """
    if _nesting_depth(raw) > MAX_JSON_DEPTH:
        raise InvalidJson(f"{what} nests objects or arrays more than {MAX_JSON_DEPTH} deep")
    try:
        value = json.loads(
            raw, parse_int=_int64, parse_float=_finite_float, parse_constant=_no_constant
        )
    except _Refused as refusal:
        raise InvalidJson(f"{what} is not valid JSON: {refusal.reason}") from None
    except json.JSONDecodeError as exc:
        raise InvalidJson(
            f"{what} is not valid JSON (line {exc.lineno}, column {exc.colno})"
        ) from None
    except (ValueError, RecursionError):  # not UTF-8 text; deep nesting the check missed
        raise InvalidJson(f"{what} is not valid JSON in UTF-8") from None
    if _MAYBE_SURROGATE.search(raw):
        where = find_invalid_text(value)
        if where is not None:
            raise InvalidJson(
                f"{what} holds text that is not valid Unicode at {where} (a lone surrogate, "
                "such as a \\ud800 escape)"
            )
    return value


def _nesting_depth(raw: bytes) -> int:
    """How deep `raw`'s brackets nest outside strings, without parsing it."""
    brackets = _JSON_STRING.sub(b"", raw).translate(None, _NOT_BRACKETS)
    if brackets.count(b"[") + brackets.count(b"{") <= MAX_JSON_DEPTH:
        return 0  # cannot nest deeper than it has openings: the usual body ends here
    deepest, level = 0, 0
    for start in range(0, len(brackets), _DEPTH_CHUNK):
        chunk = np.frombuffer(brackets[start : start + _DEPTH_CHUNK], dtype=np.uint8)
        steps = np.where((chunk == ord("[")) | (chunk == ord("{")), 1, -1).astype(np.int32)
        levels = np.cumsum(steps, dtype=np.int64) + level
        deepest = max(deepest, int(levels.max()))
        level = int(levels[-1])
    return deepest


def _int64(text: str) -> int:
    if len(text) > 20 or not INT64_MIN <= (value := int(text)) <= INT64_MAX:
        raise _Refused("a number is outside the 64-bit integer range")
    return value


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _Refused("a number is too large")
    return value


def _no_constant(name: str) -> Any:
    raise _Refused(f"{name} is not a JSON number")


def find_invalid_text(value: Any, where: str = "") -> str | None:
    """Where in a JSON value a string (or key) holds a lone surrogate ("input.prompt",
    "content[0]"), or None when all its text is valid Unicode."""
    pending: list[tuple[Any, str]] = [(value, where)]
    while pending:
        item, path = pending.pop()
        if isinstance(item, str):
            if not is_unicode(item):
                return _shown_path(path) or "the top level"
        elif isinstance(item, dict):
            for key, child in item.items():
                child_path = f"{path}.{key}" if path else str(key)
                if not is_unicode(key):
                    return f"a key of {_shown_path(path) or 'the top level'}"
                pending.append((child, child_path))
        elif isinstance(item, list):
            pending.extend((child, f"{path}[{index}]") for index, child in enumerate(item))
    return None


def _shown_path(path: str) -> str:
    return path if len(path) <= 80 else path[:77] + "..."


def is_unicode(text: str) -> bool:
    """Whether `text` is valid Unicode (encodable as UTF-8): no lone surrogates."""
    return text.isascii() or _LONE_SURROGATE.search(text) is None


# ---- text and integers in headers, query parameters and form fields ------------------


def check_text(text: str, name: str) -> str:
    """`text` if it is valid Unicode without NUL characters (which no database column
    takes); otherwise 400 naming `name`."""
    if "\x00" in text or not is_unicode(text):
        raise BadParameter(name, f"{name} holds characters that are not allowed")
    return text


def parse_int(text: str, name: str, *, low: int, high: int) -> int:
    """An integer from `low` to `high` written in ASCII digits (a minus sign allowed when
    `low` is negative); otherwise 400 naming `name`. The bounds are within 64 bits."""
    value = read_int(text, allow_negative=low < 0)
    if value is None or not low <= value <= high:
        raise BadParameter(name, f"{name} must be an integer from {low} to {high}")
    return value


def read_int(text: str | None, *, allow_negative: bool = False) -> int | None:
    """An integer in ASCII digits within 64 bits, or None when `text` is not one."""
    if text is None or not _INTEGER.fullmatch(text):
        return None
    if text.startswith("-") and not allow_negative:
        return None
    value = int(text)
    return value if INT64_MIN <= value <= INT64_MAX else None


def declared_length(header: str | None) -> int | None:
    """A `Content-Length` header's value, or None when absent or unreadable."""
    return read_int(header.strip()) if header is not None else None


# ---- headers of the runs API ---------------------------------------------------------


def wait_preference(prefer: str | None) -> int | None:
    """The `wait` preference of a `Prefer` header (RFC 7240) in seconds, at most 60; None
    when there is none. `wait` alone means the most we allow. A preference we cannot read
    is ignored, as the RFC asks, rather than refused."""
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
        if _DIGITS.fullmatch(value):  # any length: a huge wait is still "the most"
            return MAX_WAIT_SECONDS if len(value) > 4 else min(int(value), MAX_WAIT_SECONDS)
    return None


def cancel_after_ms(header: str | None) -> int | None:
    """`Cancel-After` as milliseconds: `90s`, `10m`, `1h30m`, `1500ms`, or bare seconds,
    from 1 second to 24 hours; otherwise 400."""
    if header is None:
        return None
    text = header.strip().lower()
    seconds: float | None = None
    if _SECONDS.fullmatch(text):
        seconds = float(text)
    elif _DURATION.fullmatch(text):
        parts = re.findall(_DURATION_PART, text)
        seconds = sum(float(number) * _UNIT_SECONDS[unit] for number, unit in parts)
    if seconds is None or not 1 <= seconds <= MAX_CANCEL_AFTER_SECONDS:
        raise BadParameter(
            "Cancel-After",
            "Cancel-After must be a duration from 1 second to 24 hours, such as 90s, 10m or 1h30m",
        )
    return round(seconds * 1000)


def last_event_id(header: str | None) -> int:
    """The event a reconnecting SSE client last received: 0 (from the start) when absent or
    blank; 400 when it is not an event id (a non-negative integer)."""
    if header is None or not header.strip():
        return 0
    value = read_int(header.strip())
    if value is None:
        raise BadParameter(
            "Last-Event-ID", "Last-Event-ID must be the id of an event of this stream"
        )
    return value


def byte_ranges(header: str | None, size: int) -> list[tuple[int, int]] | None:
    """The parts of a `size`-byte file that a `Range` header asks for, as (first, last)
    byte positions, or None to send the whole file.

    RFC 9110 section 14.1.2: a header that is not a valid `bytes=` range set (other units,
    bad syntax, a last position before the first, too many parts) is ignored, and the
    whole file sent; a valid one of which no part is satisfiable is
    `RangeNotSatisfiable` (416, `Content-Range: bytes */size`).
    """
    if header is None or size <= 0:
        return None
    unit, has_set, range_set = header.partition("=")
    if not has_set or unit.strip().lower() != "bytes":
        return None
    specs = [spec.strip() for spec in range_set.split(",")]
    specs = [spec for spec in specs if spec]  # the list rule allows empty elements
    if not specs or len(specs) > MAX_RANGES:
        return None
    parts: list[tuple[int, int]] = []
    for spec in specs:
        first_text, dash, last_text = spec.partition("-")
        first_text, last_text = first_text.strip(), last_text.strip()
        if not dash or (first_text and not _DIGITS.fullmatch(first_text)):
            return None
        if last_text and not _DIGITS.fullmatch(last_text):
            return None
        if not first_text:  # a suffix: the last N bytes
            if not last_text:
                return None
            length = _position(last_text)
            if length > 0:
                parts.append((max(size - length, 0), size - 1))
            continue
        first = _position(first_text)
        last = _position(last_text) if last_text else size - 1
        if last_text and last < first:
            return None  # invalid, so the whole header is ignored
        if first < size:
            parts.append((first, min(last, size - 1)))
    if not parts:
        raise RangeNotSatisfiable(size)
    return parts


def _position(digits: str) -> int:
    # Past 18 digits a position is beyond any file; int() of thousands of digits would fail.
    return int(digits) if len(digits) <= 18 else 10**18


# ---- stored text, shown ---------------------------------------------------------------


def readable(value: Any) -> Any:
    """A JSON value with every lone surrogate in its text replaced by U+FFFD, so that it
    can be encoded; `value` itself (no copy) when there is none, the usual case.

    Such text can only be in rows stored before `parse_json` refused it: they are shown
    this way (and can be read, listed and canceled) rather than failing every answer.
    """
    return value if _all_unicode(value) else _repaired(value)


def _all_unicode(value: Any) -> bool:
    if isinstance(value, str):
        return is_unicode(value)
    if isinstance(value, dict):
        return all(is_unicode(key) and _all_unicode(child) for key, child in value.items())
    if isinstance(value, list):
        return all(_all_unicode(child) for child in value)
    return True


def _repaired(value: Any) -> Any:
    if isinstance(value, str):
        return _LONE_SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_repaired(key): _repaired(child) for key, child in value.items()}
    if isinstance(value, list):
        return [_repaired(child) for child in value]
    return value
