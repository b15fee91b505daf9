"""Properties of the strict parser (`runbase.parsing`), checked with Hypothesis: whatever
arrives, each function answers a value or its own refusal, never another exception, and
what it accepts is exactly what its rules allow."""

from __future__ import annotations

import json
import string

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from runbase.errors import BadParameter, InvalidJson, RangeNotSatisfiable
from runbase.parsing import (
    INT64_MAX,
    MAX_JSON_DEPTH,
    MAX_WAIT_SECONDS,
    byte_ranges,
    cancel_after_ms,
    check_text,
    is_unicode,
    last_event_id,
    parse_int,
    parse_json,
    read_int,
    readable,
    wait_preference,
)

SURROGATES = st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF)
ANY_TEXT = st.text(st.characters(codec=None), max_size=30)  # lone surrogates included
# Text a header can carry: what Starlette decodes from Latin-1 bytes.
HEADER_TEXT = st.text(st.characters(max_codepoint=0xFF), max_size=30)
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | ANY_TEXT,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(ANY_TEXT, children, max_size=4)
    ),
    max_leaves=20,
)
settings.register_profile("parsing", max_examples=300, derandomize=True, deadline=None)
settings.load_profile("parsing")


def _is_clean(value: object) -> bool:
    if isinstance(value, str):
        return is_unicode(value)
    if isinstance(value, dict):
        return all(_is_clean(k) and _is_clean(v) for k, v in value.items())
    if isinstance(value, list):
        return all(_is_clean(v) for v in value)
    if isinstance(value, float):
        return value == value and value not in (float("inf"), float("-inf"))
    if isinstance(value, int) and not isinstance(value, bool):
        return -(2**63) <= value <= INT64_MAX
    return True


def _depth(value: object) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


@given(st.binary(max_size=200))
def test_any_bytes_are_json_or_invalid_json(raw: bytes) -> None:
    try:
        parse_json(raw)
    except InvalidJson as refusal:
        assert "Traceback" not in refusal.message and ".py" not in refusal.message


@given(JSON_VALUES)
def test_json_is_accepted_exactly_when_it_is_clean(value: object) -> None:
    raw = json.dumps(value).encode()  # NaN, Infinity and \ud800 escapes where they are
    try:
        parsed = parse_json(raw)
    except InvalidJson:
        assert not _is_clean(value)
        return
    assert _is_clean(value) and _is_clean(parsed)
    assert json.dumps(parsed) == json.dumps(json.loads(raw))


@given(st.integers(min_value=0, max_value=3 * MAX_JSON_DEPTH), st.sampled_from("[{"))
def test_nesting_is_refused_past_the_limit(depth: int, opening: str) -> None:
    inner = "1"
    for _ in range(depth):
        inner = f"[{inner}]" if opening == "[" else f'{{"k":{inner}}}'
    raw = inner.encode()
    if depth <= MAX_JSON_DEPTH:
        assert _depth(parse_json(raw)) == depth
    else:
        with pytest.raises(InvalidJson, match="deep"):
            parse_json(raw)


def test_the_nesting_check_takes_linear_time() -> None:
    """Bodies shaped to make a string pattern retry from every quote still take one pass
    (quadratic, these would run for minutes)."""
    for body in (b'"' + b'\\"' * 200_000, b'[{"a":"' + b'\\"[' * 200_000, b'"' * 400_001):
        with pytest.raises(InvalidJson):
            parse_json(body)


def test_brackets_inside_strings_do_not_count_as_nesting() -> None:
    text = '"' + "[{" * 5000 + '\\"' + "]}" * 10 + '"'
    assert parse_json(f'{{"prompt": {text}}}'.encode())["prompt"].startswith("[{[{")
    with pytest.raises(InvalidJson, match="deep"):
        parse_json(b"[" * 100_000 + b"]" * 100_000)


@given(ANY_TEXT)
@example("\ud800")
@example("a\udfffb")
def test_text_is_refused_with_a_lone_surrogate_and_accepted_without(text: str) -> None:
    raw = json.dumps({"input": {"prompt": text}}).encode()
    if is_unicode(text):
        assert parse_json(raw) == {"input": {"prompt": text}}
    else:
        with pytest.raises(InvalidJson, match=r"input\.prompt"):
            parse_json(raw)


@given(HEADER_TEXT | st.from_regex(r"-?[0-9]{1,25}", fullmatch=True))
@example("²")
@example("--5")
@example("9223372036854775808")
@example("٣")
def test_integers_are_ascii_digits_within_bounds(text: str) -> None:
    low, high = -5, 10**12
    try:
        value = parse_int(text, "n", low=low, high=high)
    except BadParameter as refusal:
        assert refusal.param == "n" and "from -5 to" in refusal.message
        assert not (
            set(text) <= set(string.digits + "-")
            and text.lstrip("-").isdigit()
            and text.count("-") <= int(text.startswith("-"))
            and low <= int(text) <= high
        )
        return
    assert str(value) == text.lstrip("0") or int(text) == value
    assert all(char in string.digits + "-" for char in text) and low <= value <= high


@given(HEADER_TEXT)
def test_read_int_answers_only_64_bit_values(text: str) -> None:
    value = read_int(text, allow_negative=True)
    assert value is None or (-(2**63) <= value <= INT64_MAX and text.isascii())


@given(HEADER_TEXT | st.just(None))
@example("wait=²")
@example("wait=" + "9" * 5000)
@example("respond-async, wait=10")
def test_an_unreadable_wait_is_ignored_never_refused(header: str | None) -> None:
    wait = wait_preference(header)
    assert wait is None or 0 <= wait <= MAX_WAIT_SECONDS


@given(HEADER_TEXT)
@example("1h30m")
@example("1500ms")
@example("²s")
def test_cancel_after_is_a_duration_or_a_400(header: str) -> None:
    try:
        ms = cancel_after_ms(header)
    except BadParameter:
        return
    assert ms is not None and 1000 <= ms <= 24 * 3600 * 1000


@given(HEADER_TEXT | st.just(None))
def test_last_event_id_is_an_id_or_a_400(header: str | None) -> None:
    try:
        after = last_event_id(header)
    except BadParameter as refusal:
        assert refusal.param == "Last-Event-ID"
        return
    assert 0 <= after <= INT64_MAX


@given(HEADER_TEXT | st.from_regex(r"bytes=[0-9 ,-]{0,20}", fullmatch=True), st.integers(0, 5000))
@example("bytes=0-", 10)
@example("bytes=-0", 10)
@example("bytes=5-2", 10)
@example("bytes=20-30", 10)
@example("bytes=²-3", 10)
def test_ranges_are_served_ignored_or_416(header: str, size: int) -> None:
    try:
        parts = byte_ranges(header, size)
    except RangeNotSatisfiable as refusal:
        assert refusal.http_status == 416 and refusal.headers["Content-Range"] == f"bytes */{size}"
        return
    if parts is not None:  # every part within the file, in order first <= last
        assert parts and all(0 <= first <= last < size for first, last in parts)


def test_ranges_follow_rfc_9110() -> None:
    assert byte_ranges("bytes=0-99", 1000) == [(0, 99)]
    assert byte_ranges("bytes=-100", 1000) == [(900, 999)]
    assert byte_ranges("bytes=900-", 1000) == [(900, 999)]
    assert byte_ranges("bytes=0-5000", 1000) == [(0, 999)]
    assert byte_ranges("bytes=0-1, 5-6", 1000) == [(0, 1), (5, 6)]
    assert byte_ranges("bytes=5-2", 1000) is None  # invalid: the header is ignored
    assert byte_ranges("items=0-1", 1000) is None
    assert byte_ranges("bytes=x-1", 1000) is None
    with pytest.raises(RangeNotSatisfiable):
        byte_ranges("bytes=1000-", 1000)
    with pytest.raises(RangeNotSatisfiable):
        byte_ranges("bytes=-0", 1000)


@given(ANY_TEXT)
def test_check_text_refuses_exactly_nul_and_lone_surrogates(text: str) -> None:
    bad = "\x00" in text or not is_unicode(text)
    if bad:
        with pytest.raises(BadParameter):
            check_text(text, "t")
    else:
        assert check_text(text, "t") == text


@given(JSON_VALUES)
def test_readable_always_encodes_and_keeps_clean_values_as_they_are(value: object) -> None:
    shown = readable(value)
    json.dumps(shown, ensure_ascii=False, allow_nan=True).encode("utf-8")  # never raises
    if _is_clean(value) or not any(
        isinstance(v, str) and not is_unicode(v) for v in _strings(value)
    ):
        assert shown is value


def _strings(value: object) -> list[object]:
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in [k, *_strings(v)]]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v)]
    return [value]


@given(SURROGATES)
def test_readable_replaces_each_lone_surrogate(char: str) -> None:
    assert readable({"prompt": f"a{char}b", "n": [char]}) == {"prompt": "a\ufffdb", "n": ["\ufffd"]}
