"""The fake fal speaks fal's real protocol: the official `fal-client` (unchanged) submits,
polls, fetches results and cancels against it, and its webhooks verify against its JWKS.

fal-client always calls `https://{FAL_QUEUE_RUN_HOST}/...`, and reads that host from the
environment when it is imported. So the client runs in a child Python with
FAL_QUEUE_RUN_HOST=127.0.0.1:<port>, the fake serves TLS with a certificate made for the
test, and SSL_CERT_FILE makes httpx (under fal-client) trust it. Nothing in the client is
patched.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import ssl
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from fakes.common import FakeServer, Fault, self_signed_certificate
from fakes.fal import IMAGE_TO_VIDEO, TEXT_TO_VIDEO, FakeFal
from runbase.media.probe import probe

FAL_KEY = "fal-key-id:fal-key-secret"


@pytest.fixture
def fal_tls(tmp_path: Path) -> Iterator[tuple[FakeFal, Path]]:
    fake = FakeFal(FAL_KEY, tmp_path / "videos", queue_seconds=0.3, run_seconds=0.3)
    key, cert = self_signed_certificate(tmp_path / "tls")
    server = FakeServer(fake, tls=(key, cert))
    server.start()
    yield fake, cert
    server.stop()


def trust(cert: Path) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(cert))


def run_client(fake: FakeFal, cert: Path, script: str) -> dict[str, object]:
    """Run `script` (which sets `result`) in a child Python with fal-client pointed at the fake."""
    host = fake.base_url.removeprefix("https://")
    env = {
        **os.environ,
        "FAL_KEY": FAL_KEY,
        "FAL_QUEUE_RUN_HOST": host,
        "SSL_CERT_FILE": str(cert),
        "NO_PROXY": "127.0.0.1,localhost",
    }
    code = "import json, fal_client\n" + textwrap.dedent(script) + "\nprint(json.dumps(result))"
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def test_official_client_subscribes_submits_polls_and_cancels(
    fal_tls: tuple[FakeFal, Path], tmp_path: Path
) -> None:
    fake, cert = fal_tls
    result = run_client(
        fake,
        cert,
        f"""
        updates = []
        out = fal_client.subscribe(
            "{TEXT_TO_VIDEO}",
            arguments={{"prompt": "a red fox", "resolution": "480p", "aspect_ratio": "1:1",
                        "duration": "4", "generate_audio": False}},
            with_logs=True, interval=0.05,
            on_queue_update=lambda update: updates.append(type(update).__name__),
        )
        handle = fal_client.submit(
            "{IMAGE_TO_VIDEO}",
            arguments={{"prompt": "waves", "image_url": "https://example.com/a.png",
                        "end_image_url": "https://example.com/b.png", "duration": "8"}},
            webhook_url="https://hooks.example/fal",
        )
        queued = fal_client.status("{IMAGE_TO_VIDEO}", handle.request_id)
        fal_client.cancel("{IMAGE_TO_VIDEO}", handle.request_id)
        try:
            handle.get()
            late = None
        except fal_client.FalClientHTTPError as exc:
            late = exc.status_code
        result = {{"video": out["video"]["url"], "updates": sorted(set(updates)),
                   "queued": type(queued).__name__, "position": queued.position,
                   "after_cancel": late}}
        """,
    )
    assert result["updates"] == ["Completed", "InProgress", "Queued"]
    assert result["queued"] == "Queued" and result["position"] == 0
    assert result["after_cancel"] == 400  # a cancelled request has no result
    assert len(fake.creates) == 2
    assert fake.creates[1]["webhook"] == "https://hooks.example/fal"
    assert fake.creates[1]["endpoint"] == IMAGE_TO_VIDEO
    # The video is a real MP4 of the contract's 480p 1:1 geometry, without audio.
    video = tmp_path / "out.mp4"
    # The fake writes a geometry's MP4 on its first GET: seconds on a busy machine.
    video.write_bytes(httpx.get(str(result["video"]), verify=trust(cert), timeout=60).content)
    info = probe(video)
    assert info.video is not None and not info.audio
    assert (info.video.width, info.video.height, info.video.num_frames) == (640, 640, 97)


def test_official_client_sees_failures_and_validation(fal_tls: tuple[FakeFal, Path]) -> None:
    fake, cert = fal_tls
    fake.faults.add(Fault.CONTENT_POLICY)
    result = run_client(
        fake,
        cert,
        f"""
        handle = fal_client.submit("{TEXT_TO_VIDEO}", arguments={{"prompt": "x"}})
        for status in handle.iter_events(interval=0.05):
            pass
        try:
            handle.get()
        except fal_client.FalClientHTTPError as exc:
            refused = [exc.status_code, exc.error_type]
        try:
            fal_client.submit("{TEXT_TO_VIDEO}", arguments={{"prompt": "x", "duration": 4}})
        except fal_client.FalClientHTTPError as exc:
            invalid = exc.status_code
        result = {{"error": status.error, "error_type": status.error_type,
                   "refused": refused, "invalid": invalid}}
        """,
    )
    assert result["error_type"] == "content_policy_violation" and result["error"]
    assert result["refused"] == [422, "content_policy_violation"]
    assert result["invalid"] == 422  # duration must be the string "4", as on fal
    assert len(fake.creates) == 1


def test_webhook_is_signed_with_a_key_from_the_jwks(fal_tls: tuple[FakeFal, Path]) -> None:
    fake, cert = fal_tls
    body = b'{"request_id": "r1", "status": "OK"}'
    headers = fake.sign("r1", body)
    jwks = httpx.get(fake.base_url + "/.well-known/jwks.json", verify=trust(cert)).json()
    x = jwks["keys"][0]["x"]
    public = Ed25519PublicKey.from_public_bytes(base64.urlsafe_b64decode(x + "=" * (-len(x) % 4)))
    message = "\n".join(
        (
            headers["x-fal-webhook-request-id"],
            headers["x-fal-webhook-user-id"],
            headers["x-fal-webhook-timestamp"],
            hashlib.sha256(body).hexdigest(),
        )
    ).encode()
    public.verify(bytes.fromhex(headers["x-fal-webhook-signature"]), message)  # raises if bad
