"""What a create may weigh: a data URI over the image limit is refused at creation, and a
body over any valid create's size is refused without being read whole."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from starlette.requests import Request
from starlette.types import Message

from runbase.core.seedance import MAX_DATA_URI_CHARS
from runbase.errors import RequestTooLarge
from runbase.http.submission import MAX_BODY_BYTES, read_body
from support import SEEDANCE, LiveServer


def test_a_data_uri_over_the_image_limit_is_refused_uncharged(
    start_server: Callable[..., LiveServer],
) -> None:
    server = start_server(workers=0)
    key = server.new_key()
    huge = "data:image/png;base64," + "A" * MAX_DATA_URI_CHARS
    body = {"model": SEEDANCE, "input": {"prompt": "a lamp", "image_urls": [huge]}}
    with server.client(key) as client:
        response = client.post("/api/v1/runs", json=body)
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_input"
    assert "image_urls[0]" in error["message"] and "30 MB" in error["message"]
    assert server.admin.runs() == []


def _request(headers: list[tuple[bytes, bytes]], chunks: list[bytes]) -> tuple[Request, list[int]]:
    """A request whose body arrives in `chunks`; the list counts the chunks read."""
    read: list[int] = []

    async def receive() -> Message:
        read.append(1)
        index = len(read) - 1
        more = index < len(chunks) - 1
        return {"type": "http.request", "body": chunks[index], "more_body": more}

    scope = {"type": "http", "method": "POST", "path": "/api/v1/runs", "headers": headers}
    return Request(scope, receive), read


async def test_a_declared_oversized_body_is_refused_before_reading() -> None:
    request, read = _request([(b"content-length", str(MAX_BODY_BYTES + 1).encode())], [b"{}"])
    with pytest.raises(RequestTooLarge):
        await read_body(request)
    assert read == []


async def test_a_streamed_body_is_cut_off_at_the_cap() -> None:
    chunk = b"x" * (8 * 1024 * 1024)
    count = MAX_BODY_BYTES // len(chunk) + 10
    request, read = _request([], [chunk] * count)
    with pytest.raises(RequestTooLarge):
        await read_body(request)
    assert len(read) == MAX_BODY_BYTES // len(chunk) + 1  # one past the cap, no further


async def test_a_body_within_the_cap_is_read_whole() -> None:
    request, _ = _request([], [b'{"model": ', b'"m"}'])
    assert await read_body(request) == b'{"model": "m"}'
