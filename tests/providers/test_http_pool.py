"""`ClientPool` against raw answers from a socket on 127.0.0.1: an answer cut short before
its declared length is an error that says the request may have been taken (a submit must
not read it as a reply), while a body without a length ends with the connection."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from runbase.providers.http_pool import ClientPool


async def serve_once(answer: bytes) -> asyncio.Server:
    """A server on 127.0.0.1 that reads a request, writes `answer` and hangs up."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer)
        await writer.drain()
        writer.close()

    return await asyncio.start_server(handle, "127.0.0.1", 0)


async def request(answer: bytes) -> httpx.Response:
    server = await serve_once(answer)
    port = server.sockets[0].getsockname()[1]
    pool = ClientPool(base_url=f"http://127.0.0.1:{port}", headers={})
    try:
        return await pool.request("POST", "/tasks", json={"prompt": "x"})
    finally:
        await pool.aclose()
        server.close()
        await server.wait_closed()


async def test_an_answer_cut_short_is_not_a_reply() -> None:
    with pytest.raises(httpx.RemoteProtocolError):
        await request(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{")
    with pytest.raises(httpx.RemoteProtocolError):
        await request(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{")


async def test_a_body_without_a_length_ends_with_the_connection() -> None:
    response = await request(b'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{"id": "t-1"}')
    assert response.status_code == 200 and response.json() == {"id": "t-1"}
