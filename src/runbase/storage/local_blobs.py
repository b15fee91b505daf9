"""The embedded blob store: files under a directory (`data/outputs`), served by runbase at
`/files/<key>` behind URLs signed with HMAC-SHA256 and an expiry.

The signing secret is generated into the data directory on first start
(`load_or_create_secret`); provider callback URLs are signed with the same one.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import hmac
import os
import re
import secrets
import shutil
import stat
import time
from pathlib import Path
from urllib.parse import quote, urlencode

from runbase.storage.blob_location import LocalFile

__all__ = ["LocalBlobStore", "load_or_create_secret"]

_SAFE_KEY = re.compile(r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*$")


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
        """Move `source` to the key's place: a rename when both are on one file system (the
        worker's scratch is in the data directory), else a copy, then `source` is removed."""
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

    def locate(self, key: str, *, base_url: str, ttl_seconds: int) -> LocalFile:
        """The blob's file (its link is not needed: the route serves the file itself)."""
        del base_url, ttl_seconds
        try:
            path = self.path_for(key)
            status = path.stat()
        except (ValueError, OSError):
            raise FileNotFoundError(key) from None
        if not stat.S_ISREG(status.st_mode):
            raise FileNotFoundError(key)
        return LocalFile(path, status.st_size)

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
    try:
        os.replace(source, target)  # atomic: readers see no file or the whole file
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    # Another file system: copy under a name of its own, then rename into place.
    partial = target.with_name(f"{target.name}.{secrets.token_hex(8)}.partial")
    shutil.copyfile(source, partial)
    os.replace(partial, target)
    source.unlink()


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
