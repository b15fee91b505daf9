"""Shared fixtures: a live runbase server on 127.0.0.1, and the servers beside it that some
tests need (a throwaway redis-server, moto's S3 server, the fake fal, Replicate and ModelArk
APIs), each on a free port of 127.0.0.1."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest
import uvicorn

import runbase
from fakes.fal import FakeFal
from fakes.modelark import FakeModelArk
from fakes.replicate import FakeReplicate
from provider_routes import ARK_KEY, FAL_KEY, REPLICATE_TOKEN, served
from runbase.http.app import create_app
from runbase.storage import write_check
from runbase.storage.db import Database
from runbase.storage.migrate import upgrade_database
from support import (
    RAY_LOOPBACK_ENV,
    S3_BUCKET,
    Admin,
    LiveServer,
    database_url_for,
    drop_test_databases,
    make_settings,
)

# The tests run the checkout they live in, here and in every `python -m runbase` they start:
# with several checkouts beside one virtualenv, the installed path may name another one.
_SOURCE = Path(__file__).resolve().parents[1] / "src"
if not Path(runbase.__file__).resolve().is_relative_to(_SOURCE):
    raise pytest.UsageError(
        f"runbase is imported from outside this checkout; set PYTHONPATH={_SOURCE}"
    )
# A write function that does anything but database work fails the test that makes it do
# so (group commit may run a write function twice).
write_check.enable()
os.environ["PYTHONPATH"] = os.pathsep.join(
    filter(None, [str(_SOURCE), os.environ.get("PYTHONPATH")])
)
# Every Ray the tests start, here or in a process they start, stays on 127.0.0.1. Ray reads
# this when it is imported, so it is set before any test module imports ray.
assert "ray" not in sys.modules, "ray was imported before conftest.py could pin it to loopback"
os.environ.update(RAY_LOOPBACK_ENV)


@pytest.fixture(autouse=True)
def _drop_test_databases() -> Iterator[None]:
    """On PostgreSQL, each test's databases are dropped when it ends (see support.py)."""
    yield
    drop_test_databases()


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    """A migrated test database (SQLite, or PostgreSQL under `make test-postgres`)."""
    url = database_url_for(tmp_path)
    upgrade_database(url)
    db = Database(url)
    yield db
    db.dispose()


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., LiveServer]]:
    """Start runbase (create_app + uvicorn) in a thread on 127.0.0.1 and a free port."""
    servers: list[tuple[uvicorn.Server, threading.Thread]] = []

    def start(port: int = 0, **overrides: Any) -> LiveServer:
        settings = make_settings(tmp_path / "data", **overrides)
        admin = Admin(settings)
        config = uvicorn.Config(
            create_app(settings),
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="on",
            proxy_headers=False,  # as `runbase serve` runs it
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the server failed to start")
            threading.Event().wait(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        servers.append((server, thread))

        def stop() -> None:
            server.should_exit = True
            thread.join(timeout=30)

        return LiveServer(f"http://127.0.0.1:{port}", settings, admin, stop)

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    """A throwaway redis-server on a free port of 127.0.0.1, persisting nothing."""
    pytest.importorskip("redis")
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    command = [redis_server, "--bind", "127.0.0.1", "--port", str(port), "--save", ""]
    command += ["--appendonly", "no", "--dir", str(tmp_path)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "redis-server did not start"
                time.sleep(0.02)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto's S3 server on a free port of 127.0.0.1, with one empty bucket (S3_BUCKET)."""
    boto3 = pytest.importorskip("boto3")
    moto_server = pytest.importorskip("moto.server")
    # boto3 reads credentials from the environment itself (see storage/s3.py).
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket=S3_BUCKET)
    try:
        yield endpoint
    finally:
        server.stop()


@pytest.fixture
def fal(tmp_path: Path) -> Iterator[FakeFal]:
    """The fake fal queue API (tests/fakes/fal.py); its key is `provider_routes.FAL_KEY`."""
    with served(FakeFal(FAL_KEY, tmp_path / "fake-videos")) as fake:
        yield fake


@pytest.fixture
def replicate(tmp_path: Path) -> Iterator[FakeReplicate]:
    """The fake Replicate API (tests/fakes/replicate.py); its token is
    `provider_routes.REPLICATE_TOKEN`."""
    with served(FakeReplicate(REPLICATE_TOKEN, tmp_path / "fake-videos")) as fake:
        yield fake


@pytest.fixture
def start_ark(tmp_path: Path) -> Iterator[Callable[..., FakeModelArk]]:
    """Start a fake ModelArk API (tests/fakes/modelark.py) on a port of its own, as often as
    a test needs: keyword arguments go to `FakeModelArk` (`queued_seconds`,
    `running_seconds`, ...). They share one cache of videos, their key is
    `provider_routes.ARK_KEY`, their API is at `fake.base_url + "/api/v3"`, and they are
    stopped when the test ends."""
    with ExitStack() as stack:

        def start(**options: Any) -> FakeModelArk:
            fake = FakeModelArk(ARK_KEY, tmp_path / "fake-videos", **options)
            stack.enter_context(served(fake))
            return fake

        yield start


@pytest.fixture
def ark(start_ark: Callable[..., FakeModelArk]) -> FakeModelArk:
    """One fake ModelArk API with its default timings (see `start_ark`)."""
    return start_ark()


@pytest.fixture(scope="session")
def tls_certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A self-signed certificate for the name `images.test`: (certificate, key)."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command to make a test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    command = (
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2"
        " -subj /CN=images.test -addext subjectAltName=DNS:images.test"
    )
    subprocess.run(
        [*command.split(), "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True
    )
    return cert, key
