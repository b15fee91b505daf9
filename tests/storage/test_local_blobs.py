"""The embedded blob store: files under a directory, behind links it signs itself.

`put_file` moves the file (a rename on one file system, a copy then a removal across two),
`locate` answers where a blob's file is, and `verify` accepts only the store's own
unexpired signatures. The S3 store's answers are in tests/storage/test_s3.py.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from runbase.storage.blob_location import LocalFile
from runbase.storage.blobs import BlobStore, open_blob_store
from runbase.storage.local_blobs import LocalBlobStore
from support import make_settings

KEY = "runs/run_1/output.mp4"


def signed_parts(store: BlobStore, key: str, ttl_seconds: int = 60) -> tuple[int, str]:
    url = store.signed_url(key, base_url="http://127.0.0.1:8000/", ttl_seconds=ttl_seconds)
    parts = urlsplit(url)
    assert parts.path == f"/files/{key}"
    query = parse_qs(parts.query)
    return int(query["expires"][0]), query["sig"][0]


def test_the_settings_give_the_local_store_by_default(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)
    store = open_blob_store(settings)
    assert isinstance(store, LocalBlobStore) and store.root == settings.outputs_dir


def test_put_file_moves_the_file_and_locate_finds_it(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path / "outputs", b"k" * 32)
    source = tmp_path / "scratch" / "output.mp4"
    source.parent.mkdir()
    source.write_bytes(b"video" * 1000)
    inode = source.stat().st_ino

    asyncio.run(store.put_file(KEY, source))

    assert not source.exists()
    location = store.locate(KEY, base_url="http://unused", ttl_seconds=60)
    assert location == LocalFile(tmp_path / "outputs" / KEY, 5000)
    assert location.path.stat().st_ino == inode  # renamed, not copied
    assert location.path.read_bytes() == b"video" * 1000
    assert asyncio.run(store.read_bytes(KEY)) == b"video" * 1000


def test_put_file_across_file_systems_copies_then_removes_the_source(tmp_path: Path) -> None:
    shm = Path("/dev/shm")
    if not shm.is_dir() or shm.stat().st_dev == tmp_path.stat().st_dev:
        pytest.skip("needs a second file system (/dev/shm) beside the test's directory")
    store = LocalBlobStore(tmp_path / "outputs", b"k" * 32)
    with tempfile.TemporaryDirectory(dir=shm) as scratch:
        source = Path(scratch) / "output.mp4"
        source.write_bytes(b"x" * 70_000)
        asyncio.run(store.put_file(KEY, source))
        assert not source.exists()
    target = tmp_path / "outputs" / KEY
    assert target.read_bytes() == b"x" * 70_000
    assert os.listdir(target.parent) == ["output.mp4"]  # no partial file left behind


@pytest.mark.parametrize("key", ["runs/none/output.mp4", "runs", "../secret", "/etc/passwd", ""])
def test_locate_refuses_what_is_not_a_stored_file(tmp_path: Path, key: str) -> None:
    store = LocalBlobStore(tmp_path / "outputs", b"k" * 32)
    (tmp_path / "outputs" / "runs").mkdir(parents=True)
    (tmp_path / "secret").write_text("no")
    with pytest.raises(FileNotFoundError):
        store.locate(key, base_url="http://unused", ttl_seconds=60)


def test_only_its_own_unexpired_signature_verifies(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path, b"k" * 32)
    expires, signature = signed_parts(store, KEY)
    assert expires > time.time()
    assert store.verify(KEY, expires, signature)
    assert not store.verify("runs/run_2/output.mp4", expires, signature)
    assert not store.verify(KEY, expires + 1, signature)
    altered = "1" if signature.endswith("0") else "0"  # a different last character
    assert not store.verify(KEY, expires, signature[:-1] + altered)
    assert not store.verify(KEY, expires, "é")  # not ASCII: refused, not a TypeError
    assert not LocalBlobStore(tmp_path, b"o" * 32).verify(KEY, expires, signature)
    stale_expires, stale_signature = signed_parts(store, KEY, ttl_seconds=-1)
    assert not store.verify(KEY, stale_expires, stale_signature)
