"""Fixtures for the media tests: a sample MP4 and a real HTTP server on loopback."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import pytest
from media_samples import FPS, ImageServer, QuietServer, smooth_frames, stereo_tone

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


def start_image_server(tls: ssl.SSLContext | None = None) -> tuple[ImageServer, QuietServer]:
    state = ImageServer(port=0, scheme="http" if tls is None else "https")

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

    server = QuietServer(("127.0.0.1", 0), RequestHandler)
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    state.port = server.server_address[1]
    threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    return state, server


@pytest.fixture
def image_server() -> Iterator[ImageServer]:
    """An HTTP server on 127.0.0.1 with no routes yet (every path answers 404)."""
    state, server = start_image_server()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def tls_image_server(tls_certificate: tuple[Path, Path]) -> Iterator[ImageServer]:
    """An HTTPS server on 127.0.0.1 whose certificate names only `images.test`."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*tls_certificate)
    state, server = start_image_server(context)
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
