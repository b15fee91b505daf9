"""Where a blob's bytes are, as `BlobStore.locate` answers: what a route needs to serve them.

LocalFile    a file on this machine: the route serves it (Range, HEAD, thumbnails)
RemoteFile   a link that someone else serves (a bucket): the route redirects to it
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["BlobLocation", "LocalFile", "RemoteFile"]


@dataclass(frozen=True)
class LocalFile:
    """The blob is the file at `path`, `size` bytes long."""

    path: Path
    size: int


@dataclass(frozen=True)
class RemoteFile:
    """The blob is served at `url` (absolute, signed, expiring), not by runbase."""

    url: str


BlobLocation = LocalFile | RemoteFile
