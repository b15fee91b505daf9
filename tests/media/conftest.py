"""Fixtures for the media tests: a sample MP4 and a real HTTP server on loopback."""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from media_samples import FPS, smooth_frames, stereo_tone

from runbase.media.video import write_mp4


@pytest.fixture(scope="session")
def sample_mp4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One small contract-shaped MP4 with audio (480p 16:9, 25 frames), written once."""
    path = tmp_path_factory.mktemp("media") / "sample.mp4"
    write_mp4(
        path,
        smooth_frames(864, 496, 25),
        width=864,
        height=496,
        fps=FPS,
        num_frames=25,
        audio=stereo_tone(25 / FPS),
    )
    return path


Handler = Callable[[BaseHTTPRequestHandler], None]


@dataclass
class ImageServer:
    """A threaded HTTP server on 127.0.0.1 whose answers each test sets per path."""

    port: int
    routes: dict[str, Handler] = field(default_factory=dict)
    hits: list[str] = field(default_factory=list)
    host_headers: list[str] = field(default_factory=list)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"

    def serve(
        self,
        path: str,
        body: bytes,
        *,
        status: int = 200,
        content_type: str = "application/octet-stream",
        headers: dict[str, str] | None = None,
        content_length: bool = True,
    ) -> str:
        """Answer `path` with `body`; without a Content-Length the body ends at close."""

        def answer(handler: BaseHTTPRequestHandler) -> None:
            handler.send_response(status)
            handler.send_header("Content-Type", content_type)
            if content_length:
                handler.send_header("Content-Length", str(len(body)))
            for name, value in (headers or {}).items():
                handler.send_header(name, value)
            handler.end_headers()
            handler.wfile.write(body)

        self.routes[path] = answer
        return self.url(path)

    def redirect(self, path: str, location: str, status: int = 302) -> str:
        def answer(handler: BaseHTTPRequestHandler) -> None:
            handler.send_response(status)
            handler.send_header("Location", location)
            handler.send_header("Content-Length", "0")
            handler.end_headers()

        self.routes[path] = answer
        return self.url(path)

    def stall(self, path: str, seconds: float) -> str:
        """Accept the request, then say nothing for `seconds`."""

        def answer(handler: BaseHTTPRequestHandler) -> None:
            time.sleep(seconds)

        self.routes[path] = answer
        return self.url(path)

    def dribble(self, path: str, body: bytes, interval: float) -> str:
        """Send the headers at once, then the body one byte per `interval` seconds."""

        def answer(handler: BaseHTTPRequestHandler) -> None:
            handler.send_response(200)
            handler.send_header("Content-Length", str(len(body)))
            handler.end_headers()
            for byte in body:
                handler.wfile.write(bytes([byte]))
                handler.wfile.flush()
                time.sleep(interval)

        self.routes[path] = answer
        return self.url(path)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up mid-answer is what several tests do on purpose."""


@pytest.fixture
def image_server() -> Iterator[ImageServer]:
    state = ImageServer(port=0)

    class RequestHandler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.hits.append(self.path)
            state.host_headers.append(self.headers.get("Host", ""))
            route = state.routes.get(self.path)
            if route is None:
                self.send_error(404)
                return
            route(self)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = _Server(("127.0.0.1", 0), RequestHandler)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Make any connection to a non-loopback address fail the test; record all attempts.

    The refusal tests need proof that a refused address was never connected to, and no
    test may send traffic off this machine.
    """
    attempts: list[str] = []
    real_connect = socket.socket.connect

    def guarded_connect(sock: socket.socket, address: Any) -> Any:
        host = address[0] if isinstance(address, tuple) else str(address)
        attempts.append(host)
        is_ip = sock.family in (socket.AF_INET, socket.AF_INET6)
        if is_ip and not ipaddress.ip_address(host).is_loopback:
            raise AssertionError(f"test tried to connect to {host}")
        return real_connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded_connect)
    return attempts
