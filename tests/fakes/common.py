"""What the provider fakes share: their clock, the MP4s they serve, the faults they can be
told to produce, and the thread that serves them on 127.0.0.1 (optionally over TLS, for
official clients that only speak https).

    FakeClock       real time plus whatever a test added with `advance`
    VideoLibrary    one real MP4 per geometry (size, frames, audio), written once with
                    runbase's own writer, so that the worker's contract check passes
    Fault           the ways a provider fails that the failover rules tell apart
    FaultPlan       a queue of faults the next creates (or the next tasks) take
    FakeServer      uvicorn in a thread, plus a ticker that lets a fake send callbacks
    self_signed_certificate   a key and certificate for 127.0.0.1, for the TLS case
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

import httpx
import numpy as np
import uvicorn
from fastapi.responses import Response

from runbase.core.seedance import FPS, SIZES
from runbase.media.video import write_mp4

__all__ = [
    "CREATE_FAULTS",
    "DroppedConnection",
    "FakeClock",
    "FakeServer",
    "Fault",
    "FaultPlan",
    "VideoLibrary",
    "deliver",
    "self_signed_certificate",
]


class FakeClock:
    """Real time plus whatever the test has added with `advance`: epoch seconds that
    advance with the monotonic clock, so that a step of the system clock (NTP) cannot
    finish tasks early."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._start = time.time() - time.monotonic()

    def now(self) -> float:
        return self._start + time.monotonic() + self._offset

    def advance(self, seconds: float) -> None:
        self._offset += seconds


class VideoLibrary:
    """Real MP4s, one per (width, height, frames, audio), written the first time they are
    asked for and shared by every task of that geometry (writing 1080p takes seconds); a
    file already in the directory (another fake's, an earlier benchmark round's) is reused."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._paths: dict[tuple[int, int, int, bool], Path] = {}

    def for_contract(
        self, resolution: str, ratio: str, seconds: int, audio: bool, *, broken: bool = False
    ) -> Path:
        """The video the contract promises: SIZES[resolution, ratio], 24 x seconds + 1
        frames; `broken`: half as wide, as a provider that got the size wrong."""
        width, height = SIZES[(resolution, ratio)]
        if broken:
            width = width // 4 * 2
        return self.path(width, height, FPS * seconds + 1, audio)

    def path(self, width: int, height: int, frames: int, audio: bool) -> Path:
        key = (width, height, frames, audio)
        with self._lock:
            path = self.directory / f"{width}x{height}-{frames}-{int(audio)}.mp4"
            if key not in self._paths and not path.is_file():
                self._write(path, width, height, frames, audio)
            self._paths[key] = path
            return path

    @staticmethod
    def _write(path: Path, width: int, height: int, frames: int, audio: bool) -> None:
        sound = None
        if audio:
            t = np.arange(int(frames / FPS * 48_000)) / 48_000
            tone = (0.1 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)
            sound = np.stack([tone, tone])
        frame = np.full((height, width, 3), 60, dtype=np.uint8)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.stem}.{secrets.token_hex(4)}.part.mp4")
        write_mp4(
            partial,
            (frame for _ in range(frames)),
            width=width,
            height=height,
            fps=FPS,
            num_frames=frames,
            audio=sound,
            preset="ultrafast",
        )
        partial.replace(path)  # whole or not at all, for fakes sharing the directory


class Fault(StrEnum):
    """How a provider fails, in the classes runbase's failover rules distinguish."""

    CONNECTION = "connection"
    """Create: the connection drops before any answer; nothing is created upstream."""
    SERVER_ERROR = "server_error"
    """Create: HTTP 500; nothing is created."""
    RATE_LIMITED = "rate_limited"
    """Create: HTTP 429 with Retry-After; nothing is created."""
    AUTH = "auth"
    """Create: the key is refused (401); nothing is created."""
    QUOTA = "quota"
    """Create: the account has no balance left; nothing is created."""
    FAILED = "failed"
    """Accepted, then failed on the provider's side (an internal error)."""
    EXPIRED = "expired"
    """Accepted, then timed out on the provider's side."""
    CONTENT_POLICY = "content_policy"
    """Accepted, then refused by the provider's moderation: the user's fault."""
    STALL = "stall"
    """Accepted, and never finishes (for cancels and deadlines)."""
    BAD_VIDEO = "bad_video"
    """Accepted, and "succeeds" with a video of the wrong size (the contract check's)."""


CREATE_FAULTS = frozenset(
    {Fault.CONNECTION, Fault.SERVER_ERROR, Fault.RATE_LIMITED, Fault.AUTH, Fault.QUOTA}
)
"""Faults that refuse the create itself; the others are carried by the accepted task."""


@dataclass
class _Planned:
    fault: Fault
    times: int | None  # None: until cleared


class FaultPlan:
    """Faults queued by a test and taken, in order, by the next creates."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._planned: list[_Planned] = []

    def add(self, fault: Fault, times: int | None = 1) -> None:
        """Fail the next `times` creates (None: every create until `clear`)."""
        with self._lock:
            self._planned.append(_Planned(fault, times))

    def clear(self) -> None:
        with self._lock:
            self._planned.clear()

    def take(self) -> Fault | None:
        """The fault for this create, if any."""
        with self._lock:
            if not self._planned:
                return None
            planned = self._planned[0]
            if planned.times is not None:
                planned.times -= 1
                if planned.times <= 0:
                    self._planned.pop(0)
            return planned.fault


class DroppedConnection(Response):
    """An answer started and left unfinished: uvicorn closes the connection, and the client
    sees a transport error (as when a provider's edge drops the connection)."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        start = {"type": "http.response.start", "status": 200}
        await send(start | {"headers": [(b"content-length", b"100")]})
        await send({"type": "http.response.body", "body": b"{", "more_body": True})


def deliver(
    url: str,
    body: bytes,
    sign: Callable[[], dict[str, str]],
    attempts: int,
    on_attempt: Callable[[int, int], None],
) -> None:
    """POST a provider's callback, signed afresh each time, until it is answered 2xx or
    `attempts` are spent; `on_attempt(attempt, status or 0)` records each try."""
    for attempt in range(1, attempts + 1):
        status = 0
        with contextlib.suppress(httpx.HTTPError):
            status = httpx.post(url, content=body, headers=sign(), timeout=5).status_code
        on_attempt(attempt, status)
        if 200 <= status < 300:
            return
        time.sleep(0.2 * attempt)


class ServedFake(Protocol):
    app: Any
    base_url: str

    def tick(self) -> None: ...


class FakeServer:
    """A fake served by uvicorn in a thread on 127.0.0.1, with a ticker for callbacks."""

    def __init__(
        self, fake: ServedFake, *, tls: tuple[Path, Path] | None = None, tick_s: float = 0.02
    ) -> None:
        self.fake = fake
        options: dict[str, Any] = {}
        if tls is not None:
            options = {"ssl_keyfile": str(tls[0]), "ssl_certfile": str(tls[1])}
        config = uvicorn.Config(fake.app, host="127.0.0.1", port=0, log_level="critical", **options)
        self._scheme = "https" if tls else "http"
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._stopping = threading.Event()
        self._tick_s = tick_s
        self._ticker = threading.Thread(target=self._tick, daemon=True)
        self.port = 0

    def start(self) -> str:
        self._thread.start()
        while not self._server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"the fake {type(self.fake).__name__} failed to start")
            time.sleep(0.01)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        self.fake.base_url = f"{self._scheme}://127.0.0.1:{self.port}"
        self._ticker.start()
        return self.fake.base_url

    def _tick(self) -> None:
        while not self._stopping.wait(self._tick_s):
            self.fake.tick()

    def stop(self) -> None:
        self._stopping.set()
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._ticker.join(timeout=5)


def self_signed_certificate(directory: Path) -> tuple[Path, Path]:
    """A key and a certificate for 127.0.0.1 (and localhost); trust it with SSL_CERT_FILE."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    directory.mkdir(parents=True, exist_ok=True)
    key_path, cert_path = directory / "key.pem", directory / "cert.pem"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path
