"""Blob stores hold the output files; the database holds only their keys.

    BlobStore (Protocol)
    ├── LocalBlobStore   files under a directory, served by runbase at /files/<key> with
    │                    an HMAC-signed expiring URL (storage/local_blobs.py; the default)
    └── S3BlobStore      objects in a bucket, `RUNBASE_STORAGE_URL=s3://bucket/prefix`;
                         URLs are presigned GETs on the bucket (storage/s3.py)

`open_blob_store(settings)` picks one; the server, `runbase worker` and Ray actors all build
their store through it, so that every process agrees on where outputs live.

A key is a relative path such as `runs/run_01j.../output.mp4` (outputs) or
`inputs/<sha256>.png` (images sent inside a create, `storage/inputs.py`). Routes never ask
which store they have: `locate` says how to serve a blob (`storage/blob_location.py`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from runbase.config import Settings
from runbase.storage.blob_location import BlobLocation
from runbase.storage.local_blobs import LocalBlobStore, load_or_create_secret
from runbase.storage.s3 import MIB, S3BlobStore, parse_s3_url

__all__ = ["BlobStore", "open_blob_store"]


class BlobStore(Protocol):
    async def put_file(self, key: str, source: Path) -> None:
        """Store the file `source` under `key`. The caller gives `source` up: the local
        store moves it there (a rename on the same file system), S3 uploads it and leaves
        it for the caller's clean-up; either way the caller must not use it afterwards."""

    async def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> None:
        """Store `data` under `key`, replacing what was there."""

    async def read_bytes(self, key: str) -> bytes:
        """The blob's bytes; `FileNotFoundError` when there is none."""

    def signed_url(self, key: str, *, base_url: str, ttl_seconds: int) -> str:
        """An absolute URL that serves the blob until it expires."""

    def locate(self, key: str, *, base_url: str, ttl_seconds: int) -> BlobLocation:
        """How to serve the blob: the file on this machine (`LocalFile`), or a link that
        serves it for `ttl_seconds` (`RemoteFile`). `FileNotFoundError` when the store
        knows there is none (a bucket's link is not checked: the bucket answers 404)."""

    def verify(self, key: str, expires: int, signature: str) -> bool:
        """Whether a `/files/<key>` link's `expires` and `sig` are this store's and still
        valid. A store whose links point elsewhere (S3) signs none: always False."""


def open_blob_store(settings: Settings) -> BlobStore:
    """The blob store the settings name: S3 for an s3:// storage URL, else the local dir."""
    if settings.storage_url:
        bucket, prefix = parse_s3_url(settings.storage_url)
        return S3BlobStore(
            bucket,
            prefix,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            multipart_threshold_bytes=settings.s3_multipart_threshold_mb * MIB,
            multipart_chunk_bytes=settings.s3_multipart_chunk_mb * MIB,
        )
    secret = load_or_create_secret(settings.data_dir / "url-signing.key")
    return LocalBlobStore(settings.outputs_dir, secret)
