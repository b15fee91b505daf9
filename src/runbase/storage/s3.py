"""Output files in S3-compatible object storage (AWS S3, MinIO, Ceph, R2, ...), for
`RUNBASE_STORAGE_URL=s3://bucket/prefix`: a `BlobStore` (storage/blobs.py) whose URLs are
presigned GETs straight to the bucket, so runbase serves no bytes.

boto3 is optional (`pip install runbase[s3]`) and imported only when an s3:// URL is used.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from runbase.storage.blob_location import RemoteFile

__all__ = ["MIB", "S3BlobStore", "parse_s3_url"]

if TYPE_CHECKING:
    from boto3.s3.transfer import TransferConfig
    from mypy_boto3_s3 import S3Client

# SigV4 presigned URLs live at most 7 days; S3 rejects longer ones when they are used.
_MAX_PRESIGN_SECONDS = 7 * 24 * 3600
MIB = 1024 * 1024


class S3BlobStore:
    """Blobs as objects under `prefix/` in one bucket."""

    def __init__(
        self,
        bucket: str,
        prefix: str = "",
        *,
        endpoint_url: str | None = None,
        region: str | None = None,
        multipart_threshold_bytes: int = 64 * MIB,
        multipart_chunk_bytes: int = 16 * MIB,
    ) -> None:
        try:
            import boto3
            from boto3.s3.transfer import TransferConfig
            from botocore.config import Config
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise RuntimeError("s3:// storage needs boto3: pip install 'runbase[s3]'") from exc
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        # Credentials, and the endpoint and region when not given here, come from boto3's own
        # chain (AWS_ACCESS_KEY_ID, AWS_PROFILE, ~/.aws, instance roles, AWS_ENDPOINT_URL...):
        # boto3 reads that environment itself. It is the one exception to "only config.py
        # reads the environment", kept so that every standard AWS set-up works unchanged.
        self._client: S3Client = boto3.client(
            "s3",
            endpoint_url=endpoint_url,
            region_name=region,
            # SigV4 everywhere (required by most regions and S3-compatible servers); path-style
            # addressing when an endpoint is given, as MinIO and friends expect.
            config=Config(
                signature_version="s3v4",
                s3={"addressing_style": "path" if endpoint_url else "auto"},
                retries={"max_attempts": 5, "mode": "standard"},
            ),
        )
        self._transfer: TransferConfig = TransferConfig(
            multipart_threshold=multipart_threshold_bytes,
            multipart_chunksize=multipart_chunk_bytes,
            max_concurrency=4,
        )

    def object_key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    async def put_file(self, key: str, source: Path) -> None:
        """Upload `source` (left in place for the caller to remove); files above the
        threshold go up as a multipart upload."""
        content_type = "video/mp4" if source.suffix == ".mp4" else "application/octet-stream"
        await asyncio.to_thread(
            self._client.upload_file,
            str(source),
            self.bucket,
            self.object_key(key),
            ExtraArgs={"ContentType": content_type},
            Config=self._transfer,
        )

    async def put_bytes(self, key: str, data: bytes, *, content_type: str | None = None) -> None:
        await asyncio.to_thread(
            self._client.put_object,
            Bucket=self.bucket,
            Key=self.object_key(key),
            Body=data,
            ContentType=content_type or "application/octet-stream",
        )

    async def read_bytes(self, key: str) -> bytes:
        return await asyncio.to_thread(self._read, key)

    def _read(self, key: str) -> bytes:
        try:
            answer = self._client.get_object(Bucket=self.bucket, Key=self.object_key(key))
        except self._client.exceptions.NoSuchKey:
            raise FileNotFoundError(key) from None
        return answer["Body"].read()

    def signed_url(self, key: str, *, base_url: str, ttl_seconds: int) -> str:
        """A presigned GET on the bucket (`base_url` is not used: the bucket serves it)."""
        del base_url
        return self._client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": self.object_key(key)},
            ExpiresIn=max(1, min(ttl_seconds, _MAX_PRESIGN_SECONDS)),
        )

    def locate(self, key: str, *, base_url: str, ttl_seconds: int) -> RemoteFile:
        """The bucket serves every blob: a presigned link (not checked: a HEAD would cost
        a round trip, and the bucket answers a missing key with 404 itself)."""
        return RemoteFile(self.signed_url(key, base_url=base_url, ttl_seconds=ttl_seconds))

    def verify(self, key: str, expires: int, signature: str) -> bool:
        """False: this store's links go to the bucket, none to runbase's `/files/`."""
        del key, expires, signature
        return False


def parse_s3_url(url: str) -> tuple[str, str]:
    """`s3://bucket/some/prefix` -> ("bucket", "some/prefix")."""
    parts = urlsplit(url)
    if parts.scheme != "s3" or not parts.netloc:
        raise ValueError(f"not an s3://bucket/prefix URL: {url!r}")
    return parts.netloc, parts.path.strip("/")
