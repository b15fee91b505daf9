"""`ClientPool` against real sockets on 127.0.0.1.

An answer cut short before its declared length is an error that says the request may have
been taken (a submit must not read it as a reply), while a body without a length ends with
the connection. Under load, when every connection is busy, a submit (any method but GET)
goes before the polls waiting for a connection, and a canceled waiter leaves no lane taken.
"""

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


class HeldServer:
    """Answers each request with its request line, once `release` lets one more through."""

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.gate = asyncio.Semaphore(0)
        self.server: asyncio.Server | None = None

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            line = head.split(b"\r\n", 1)[0].decode()
            length = next(
                (
                    int(h.split(b":")[1])
                    for h in head.split(b"\r\n")
                    if h.lower().startswith(b"content-length:")
                ),
                0,
            )
            await reader.readexactly(length)
            self.seen.append(line.rsplit(" ", 1)[0])
            await self.gate.acquire()
            body = line.encode()
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()

    async def stop(self) -> None:
        assert self.server is not None
        self.server.close()


async def _settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0.01)


async def test_a_submit_goes_before_the_polls_waiting_for_a_connection() -> None:
    server = HeldServer()
    pool = ClientPool(base_url=await server.start(), headers={}, max_connections=1)
    try:
        busy = asyncio.create_task(pool.request("GET", "/tasks/0"))
        await _settle()  # the one connection is taken by the first poll
        polls = []
        for number in (1, 2):
            polls.append(asyncio.create_task(pool.request("GET", f"/tasks/{number}")))
            await _settle()
        submit = asyncio.create_task(pool.request("POST", "/tasks", json={"a": 1}))
        await _settle()
        for _ in range(4):
            server.gate.release()
        answers = await asyncio.gather(busy, *polls, submit)
        assert [a.status_code for a in answers] == [200] * 4
        assert server.seen == ["GET /tasks/0", "POST /tasks", "GET /tasks/1", "GET /tasks/2"]
    finally:
        await pool.aclose()
        await server.stop()


async def test_a_canceled_waiter_leaves_no_connection_taken() -> None:
    server = HeldServer()
    pool = ClientPool(base_url=await server.start(), headers={}, max_connections=1)
    try:
        busy = asyncio.create_task(pool.request("GET", "/tasks/0"))
        await _settle()
        gone = asyncio.create_task(pool.request("POST", "/tasks", json={}))
        await _settle()
        gone.cancel()
        server.gate.release()
        assert (await busy).status_code == 200
        server.gate.release()
        after = await asyncio.wait_for(pool.request("GET", "/tasks/1"), 5)
        assert after.status_code == 200
        assert server.seen == ["GET /tasks/0", "GET /tasks/1"]
    finally:
        await pool.aclose()
        await server.stop()
