"""`VideoDownloads` against real HTTP/1.1 servers on 127.0.0.1.

A provider's video link is fetched on the event loop: streamed to disk over connections
kept alive per storage host, redirects followed by hand (each hop through the public-address
check), refused as soon as the answer says it must be (an expired link, a declared length
over the cap), cut off when the body grows past the cap or the deadline passes, and never
leaving a partial file behind.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from runbase.providers import TaskFailed
from runbase.providers.download import VideoDownloads
from support import fake_resolver

Route = Callable[[asyncio.StreamWriter], Awaitable[bool]]  # answers; False closes


class Storage:
    """A keep-alive HTTP/1.1 server whose answers each test sets per path."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.connections = 0
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.base = ""
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    async def start(self, tls: ssl.SSLContext | None = None) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=tls)
        port = self._server.sockets[0].getsockname()[1]
        self.base = f"{'https' if tls else 'http'}://127.0.0.1:{port}"

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for handler in self._handlers:  # those still waiting on purpose
            handler.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return self.base.replace("127.0.0.1", host) + path

    def video(self, path: str, body: bytes) -> str:
        async def answer(writer: asyncio.StreamWriter) -> bool:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            return True

        self.routes[path] = answer
        return self.url(path)

    def chunked(self, path: str, body: bytes, pieces: int = 7) -> str:
        async def answer(writer: asyncio.StreamWriter) -> bool:
            writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            size = -(-len(body) // pieces)
            for start in range(0, len(body), size):
                piece = body[start : start + size]
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                await writer.drain()
            writer.write(b"0\r\n\r\n")
            return True

        self.routes[path] = answer
        return self.url(path)

    def raw(self, path: str, answer_bytes: bytes, *, then_wait: float = 0.0) -> str:
        """Write `answer_bytes`, wait `then_wait` seconds, and hang up."""

        async def answer(writer: asyncio.StreamWriter) -> bool:
            writer.write(answer_bytes)
            await writer.drain()
            await asyncio.sleep(then_wait)
            return False

        self.routes[path] = answer
        return self.url(path)

    def after(self, path: str, seconds: float, answer_bytes: bytes) -> str:
        """Wait `seconds`, then write `answer_bytes` (the connection stays open)."""

        async def answer(writer: asyncio.StreamWriter) -> bool:
            await asyncio.sleep(seconds)
            writer.write(answer_bytes)
            return True

        self.routes[path] = answer
        return self.url(path)

    def redirect(self, path: str, location: str, status: int = 302) -> str:
        head = f"HTTP/1.1 {status} Moved\r\nLocation: {location}\r\nContent-Length: 5\r\n\r\nmoved"
        return self._fixed(path, head.encode())

    def status(self, path: str, status: int) -> str:
        return self._fixed(path, b"HTTP/1.1 %d Nope\r\nContent-Length: 4\r\n\r\nnope" % status)

    def _fixed(self, path: str, data: bytes) -> str:
        async def answer(writer: asyncio.StreamWriter) -> bool:
            writer.write(data)
            return True

        self.routes[path] = answer
        return self.url(path)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        try:
            while True:
                head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
                target = head[0].split(" ")[1]
                fields = dict(line.split(": ", 1) for line in head[1:] if line)
                self.requests.append((target, fields))
                route = self.routes.get(target)
                if route is None:
                    writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
                elif not await route(writer):
                    break
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            self._handlers.discard(handler)


@pytest.fixture
async def storage() -> AsyncIterator[Storage]:
    server = Storage()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def downloads() -> AsyncIterator[VideoDownloads]:
    pool = VideoDownloads()
    yield pool
    await pool.aclose()


async def fetch(
    downloads: VideoDownloads,
    url: str,
    output: Path,
    *,
    private: bool = True,
    timeout_s: float = 10.0,
    max_bytes: int = 1 << 20,
) -> None:
    await downloads.fetch(
        url,
        output,
        provider="ModelArk",
        allow_private_hosts=private,
        timeout_s=timeout_s,
        max_bytes=max_bytes,
    )


def nothing_left(folder: Path) -> bool:
    return not any(folder.iterdir())


async def fails(downloads: VideoDownloads, url: str, folder: Path, match: str, **kw: Any) -> None:
    """The download fails with a `TaskFailed` that matches, and leaves no file in `folder`."""
    with pytest.raises(TaskFailed, match=match):
        await fetch(downloads, url, folder / "out.mp4", **kw)
    assert nothing_left(folder)


VIDEO = bytes(range(256)) * 2048  # 512 KiB


async def test_videos_stream_to_disk_over_one_kept_alive_connection(
    storage: Storage, downloads: VideoDownloads, tmp_path: Path
) -> None:
    first = storage.video("/a.mp4?X-Signature=abc://def", VIDEO)
    second = storage.chunked("/b.mp4", VIDEO[::-1])

    await fetch(downloads, first, tmp_path / "a.mp4")
    await fetch(downloads, second, tmp_path / "b.mp4")

    assert (tmp_path / "a.mp4").read_bytes() == VIDEO
    assert (tmp_path / "b.mp4").read_bytes() == VIDEO[::-1]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.mp4", "b.mp4"]
    assert storage.connections == 1
    assert [target for target, _ in storage.requests] == ["/a.mp4?X-Signature=abc://def", "/b.mp4"]
    assert all("Authorization" not in fields for _, fields in storage.requests)


async def test_many_downloads_at_once_share_a_few_connections(
    storage: Storage, downloads: VideoDownloads, tmp_path: Path
) -> None:
    urls = [storage.video(f"/{n}.mp4", VIDEO[n:]) for n in range(100)]

    await asyncio.gather(*(fetch(downloads, u, tmp_path / f"{n}.mp4") for n, u in enumerate(urls)))

    assert all((tmp_path / f"{n}.mp4").read_bytes() == VIDEO[n:] for n in range(100))
    assert storage.connections <= 32


async def test_redirects_are_followed_across_hosts(
    storage: Storage, downloads: VideoDownloads, tmp_path: Path
) -> None:
    other = Storage()
    await other.start()
    try:
        final = other.video("/final.mp4", VIDEO)
        storage.redirect("/start", "/hop", status=301)
        storage.redirect("/hop", final, status=307)

        await fetch(downloads, storage.url("/start"), tmp_path / "out.mp4")

        assert (tmp_path / "out.mp4").read_bytes() == VIDEO
        assert [target for target, _ in storage.requests] == ["/start", "/hop"]
        assert [target for target, _ in other.requests] == ["/final.mp4"]
    finally:
        await other.stop()


async def test_a_redirect_loop_ends_in_words(
    storage: Storage, downloads: VideoDownloads, tmp_path: Path
) -> None:
    loop = storage.redirect("/loop", "/loop")

    with pytest.raises(TaskFailed, match="redirected too many times"):
        await fetch(downloads, loop, tmp_path / "out.mp4")

    assert len(storage.requests) == 4
    assert nothing_left(tmp_path)


@pytest.mark.parametrize(
    ("status", "message"),
    [
        (403, r"the ModelArk video link has expired or is gone \(HTTP 403\)"),
        (404, r"expired or is gone \(HTTP 404\)"),
        (410, r"expired or is gone \(HTTP 410\)"),
        (500, r"downloading the ModelArk video failed: HTTP 500"),
        (302, r"failed: HTTP 302"),  # a redirect that names no place
    ],
)
async def test_an_answer_other_than_a_video_fails_in_words(
    storage: Storage, downloads: VideoDownloads, tmp_path: Path, status: int, message: str
) -> None:
    url = storage.status("/gone.mp4", status)

    await fails(downloads, url, tmp_path, message)


async def test_a_declared_length_over_the_cap_is_refused_before_the_body(
    storage: Storage, downloads: VideoDownloads, tmp_path: Path
) -> None:
    # Headers only, then silence: waiting for the body would run into the deadline.
    url = storage.raw("/big.mp4", b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n", then_wait=30)

    await fails(
        downloads, url, tmp_path, "larger than the download limit", max_bytes=1000, timeout_s=20
    )


async def test_a_body_that_grows_past_the_cap_is_cut_off(
    storage: Storage, downloads: VideoDownloads, tmp_path: Path
) -> None:
    url = storage.chunked("/endless.mp4", VIDEO, pieces=64)

    await fails(downloads, url, tmp_path, "larger than the download limit", max_bytes=100_000)


async def test_one_deadline_covers_the_whole_transfer(
    storage: Storage, downloads: VideoDownloads, tmp_path: Path
) -> None:
    url = storage.raw(
        "/slow.mp4", b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\nsome", then_wait=30
    )

    await fails(downloads, url, tmp_path, "took too long", timeout_s=0.5)


async def test_the_deadline_spans_every_hop_of_a_redirect(
    storage: Storage, downloads: VideoDownloads, tmp_path: Path
) -> None:
    # Each hop answers after 0.6 s: within a 1 s deadline alone, not together.
    storage.after(
        "/a.mp4", 0.6, b"HTTP/1.1 302 Found\r\nLocation: /b.mp4\r\nContent-Length: 0\r\n\r\n"
    )
    storage.after("/b.mp4", 0.6, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nvideo")

    await fails(downloads, storage.url("/a.mp4"), tmp_path, "took too long", timeout_s=1.0)


async def test_a_wait_for_a_free_connection_is_not_counted_against_the_deadline(
    storage: Storage, tmp_path: Path
) -> None:
    # Two connections, three downloads of 1 s each, a deadline of 1.5 s: the third waits
    # 1 s for a connection, then takes 1 s of its own.
    storage.after("/slow.mp4", 1.0, b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nvideo")
    downloads = VideoDownloads(connections_per_origin=2)
    try:
        await asyncio.gather(
            *(
                fetch(downloads, storage.url("/slow.mp4"), tmp_path / f"{n}.mp4", timeout_s=1.5)
                for n in range(3)
            )
        )
    finally:
        await downloads.aclose()

    assert [(tmp_path / f"{n}.mp4").read_bytes() for n in range(3)] == [b"video"] * 3
    assert storage.connections == 2


async def test_a_body_cut_short_fails(
    storage: Storage, downloads: VideoDownloads, tmp_path: Path
) -> None:
    url = storage.raw("/cut.mp4", b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\nsome")

    await fails(downloads, url, tmp_path, "failed: RemoteProtocolError")


async def test_a_canceled_download_leaves_nothing(
    storage: Storage, downloads: VideoDownloads, tmp_path: Path
) -> None:
    url = storage.raw(
        "/slow.mp4", b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nsome", then_wait=30
    )
    task = asyncio.create_task(fetch(downloads, url, tmp_path / "out.mp4"))
    while not (tmp_path / "out.part").exists():
        await asyncio.sleep(0.01)

    task.cancel()

    with pytest.raises(asyncio.CancelledError):
        await task
    assert nothing_left(tmp_path)


@pytest.mark.parametrize("link", ["ftp://127.0.0.1/a.mp4", "file:///etc/passwd", "/a.mp4"])
async def test_a_link_that_is_not_http_is_refused(
    downloads: VideoDownloads, tmp_path: Path, link: str
) -> None:
    with pytest.raises(TaskFailed, match="not http"):
        await fetch(downloads, link, tmp_path / "out.mp4")


@pytest.fixture
async def connects(storage: Storage, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the address of every connection the event loop opens. A connection to the
    stand-in public address 8.8.8.8 goes to `storage` instead, and any other connection
    off loopback fails the test (no test may leave this machine)."""
    connected: list[str] = []
    loop = asyncio.get_running_loop()
    real_create_connection = loop.create_connection

    async def create_connection(factory, host, port, **kwargs):  # type: ignore[no-untyped-def]
        connected.append(host)
        if host == "8.8.8.8":
            host, port = "127.0.0.1", int(storage.base.rsplit(":", 1)[1])
        assert host == "127.0.0.1", f"a test tried to connect to {host}"
        return await real_create_connection(factory, host, port, **kwargs)

    monkeypatch.setattr(loop, "create_connection", create_connection)
    return connected


async def test_a_private_address_is_refused_before_any_connection(
    storage: Storage,
    downloads: VideoDownloads,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    connects: list[str],
) -> None:
    fake_resolver(monkeypatch, {"mixed.test": [["8.8.8.8", "127.0.0.1"]]})
    direct = storage.video("/a.mp4", VIDEO)
    by_name = storage.url("/a.mp4", host="mixed.test")

    refused = r"non-public address; refused: .*127\.0\.0\.1, a loopback"
    for url in (direct, by_name):
        await fails(downloads, url, tmp_path, refused, private=False)

    assert connects == []


async def test_a_redirect_to_a_private_address_is_refused(
    storage: Storage,
    downloads: VideoDownloads,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    connects: list[str],
) -> None:
    # The first hop's name resolves to a public address (standing in for this test's
    # server), and the link then redirects inside.
    fake_resolver(monkeypatch, {"cdn.test": [["8.8.8.8"]]})
    storage.redirect("/a.mp4", storage.url("/b.mp4"))
    port = storage.base.rsplit(":", 1)[1]

    url = f"http://cdn.test:{port}/a.mp4"
    await fails(downloads, url, tmp_path, "non-public address", private=False)

    assert connects == ["8.8.8.8"]
    assert [target for target, _ in storage.requests] == ["/a.mp4"]
    assert storage.requests[0][1]["Host"] == f"cdn.test:{port}"


async def test_the_connection_goes_to_the_checked_address_not_the_name(
    storage: Storage,
    downloads: VideoDownloads,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    connects: list[str],
) -> None:
    # DNS rebinding: a second lookup would answer an address inside; the connection must
    # go to the address checked in the first, and be kept for the next download.
    lookups = fake_resolver(monkeypatch, {"videos.test": [["8.8.8.8"], ["10.9.9.9"]]})
    storage.video("/a.mp4", VIDEO)
    url = storage.url("/a.mp4", host="videos.test")

    for name in ("a.mp4", "b.mp4"):
        await fetch(downloads, url, tmp_path / name, private=False)

    assert lookups == ["videos.test"]
    assert connects == ["8.8.8.8"]
    assert (tmp_path / "b.mp4").read_bytes() == VIDEO


async def test_https_checks_the_certificate_against_the_name_in_the_link(
    downloads: VideoDownloads,
    tmp_path: Path,
    tls_certificate: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_certificate[0]))
    fake_resolver(monkeypatch, {"images.test": [["127.0.0.1"]]})
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*tls_certificate)
    server = Storage()
    await server.start(tls=context)
    try:
        server.video("/a.mp4", VIDEO)

        await fetch(downloads, server.url("/a.mp4", host="images.test"), tmp_path / "a.mp4")
        assert (tmp_path / "a.mp4").read_bytes() == VIDEO

        # By address, the certificate (for images.test only) does not match.
        with pytest.raises(TaskFailed, match="failed: ConnectError"):
            await fetch(downloads, server.url("/a.mp4"), tmp_path / "b.mp4")
        assert not (tmp_path / "b.mp4").exists()
    finally:
        await server.stop()
