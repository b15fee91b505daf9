"""Blob stores hold the output files; the database holds only their keys.

    BlobStore (Protocol)
    └── LocalBlobStore   files under a directory, served by runbase at /files/<key>
                         with an HMAC-signed expiring URL

A key is a relative path such as `runs/run_01j.../output.mp4` (outputs) or
`inputs/<sha256>.png` (images sent inside a create, `storage/inputs.py`).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import re
import secrets
import shutil
import time
from pathlib import Path
from typing import Protocol
from urllib.parse import quote, urlencode

_SAFE_KEY = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")


class BlobStore(Protocol):
    async def put_file(self, key: str, source: Path) -> None:
        """Store `source` under `key` (the source may be moved away)."""

    async def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> None:
        """Store `data` under `key`, replacing what was there."""

    async def read_bytes(self, key: str) -> bytes:
        """The blob's bytes; `FileNotFoundError` when there is none."""

    def signed_url(self, key: str, *, base_url: str, ttl_seconds: int) -> str:
        """An absolute URL that serves the blob until it expires."""


class LocalBlobStore:
    """Files in a local directory, signed with a secret kept beside them."""

    def __init__(self, root: Path, secret: bytes) -> None:
        self.root = root
        self._secret = secret

    def path_for(self, key: str) -> Path:
        # Keys come from our own code, but a URL carries them back in: refuse anything that
        # could step outside the root (.., absolute paths, odd characters).
        if not _SAFE_KEY.match(key) or any(part in {".", ".."} for part in key.split("/")):
            raise ValueError(f"invalid blob key {key!r}")
        return self.root / key

    async def put_file(self, key: str, source: Path) -> None:
        target = self.path_for(key)
        await asyncio.to_thread(_move, source, target)

    async def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> None:
        del content_type  # served by its name's suffix
        await asyncio.to_thread(_write, data, self.path_for(key))

    async def read_bytes(self, key: str) -> bytes:
        return await asyncio.to_thread(self.path_for(key).read_bytes)

    def signed_url(self, key: str, *, base_url: str, ttl_seconds: int) -> str:
        expires = int(time.time()) + ttl_seconds
        query = urlencode({"expires": expires, "sig": self._sign(key, expires)})
        return f"{base_url.rstrip('/')}/files/{quote(key)}?{query}"

    def verify(self, key: str, expires: int, signature: str) -> bool:
        if expires < time.time():
            return False
        # As bytes: compare_digest refuses str with non-ASCII characters (a TypeError, a 500).
        return hmac.compare_digest(self._sign(key, expires).encode(), signature.encode())

    def _sign(self, key: str, expires: int) -> str:
        message = f"{key}\n{expires}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()


def _move(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    shutil.copyfile(source, partial)
    os.replace(partial, target)


def _write(data: bytes, target: Path) -> None:
    # A name of its own per writer: two creates storing the same image never share one.
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(f"{target.name}.{secrets.token_hex(8)}.partial")
    partial.write_bytes(data)
    os.replace(partial, target)


def load_or_create_secret(path: Path) -> bytes:
    """The URL-signing secret, generated on first start and kept private to the owner."""
    if path.exists():
        return bytes.fromhex(path.read_text().strip())
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_bytes(32)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(secret.hex())
    return secret
