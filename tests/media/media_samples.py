"""Test pictures, sound and an HTTP server for the media tests.

Imported by name (tests/media is on sys.path while its tests run), like tests/support.py.
"""

from __future__ import annotations

import io
import struct
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
from PIL import Image

FPS = 24


def smooth_frame(width: int, height: int, index: int) -> np.ndarray:
    """A smooth colour gradient with a soft moving blob: easy to compress, easy to compare."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    cx = width * (0.2 + 0.6 * ((index * 7) % 60) / 60)
    blob = np.exp(-(((x - cx) ** 2 + (y - height / 2) ** 2) / (2 * (height / 8) ** 2)))
    frame = np.empty((height, width, 3), dtype=np.float32)
    frame[..., 0] = 40 + 160 * x / width
    frame[..., 1] = 40 + 160 * y / height
    frame[..., 2] = 60 + 150 * blob
    return frame.round().astype(np.uint8)


def smooth_frames(width: int, height: int, count: int) -> Iterator[np.ndarray]:
    for index in range(count):
        yield smooth_frame(width, height, index)


def stereo_tone(seconds: float, rate: int = 48_000) -> np.ndarray:
    """A 440 Hz tone on the left and 660 Hz on the right, float32 (2, n)."""
    t = np.arange(round(seconds * rate), dtype=np.float64) / rate
    left = 0.4 * np.sin(2 * np.pi * 440 * t)
    right = 0.4 * np.sin(2 * np.pi * 660 * t)
    return np.stack([left, right]).astype(np.float32)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def encode_image(
    fmt: str, size: tuple[int, int], *, mode: str = "RGB", **save_options: Any
) -> bytes:
    """A gradient picture of `size`, saved in Pillow format `fmt`."""
    width, height = size
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    pixels = np.empty((height, width, 3), dtype=np.uint8)
    pixels[..., 0] = x.astype(np.uint8)
    pixels[..., 1] = y.astype(np.uint8)
    pixels[..., 2] = 128
    image = Image.fromarray(pixels).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save_options)
    return buffer.getvalue()


def save_image(image: Image.Image, fmt: str, **save_options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save_options)
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims `width` x `height`: a decompression bomb's shape."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


Handler = Callable[[BaseHTTPRequestHandler], None]


@dataclass
class ImageServer:
    """A threaded HTTP server on 127.0.0.1 whose answers each test sets per path."""

    port: int
    scheme: str = "http"
    routes: dict[str, Handler] = field(default_factory=dict)
    hits: list[str] = field(default_factory=list)
    host_headers: list[str] = field(default_factory=list)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"

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


class QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A client that hangs up mid-answer is what several tests do on purpose."""
