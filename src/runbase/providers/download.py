"""Downloading a provider's video at once (upstream links expire), safely.

The link comes from the provider, not from a user, but a compromised or spoofed answer must
not turn the worker into a proxy into our own network: connections go only to public
addresses (`runbase.outbound.checked_addresses`), checked as they are opened, redirects
followed by hand through the same check, within a size cap and one deadline for the whole
transfer (a wait for a free connection, behind other downloads, does not count). The
provider's API key is never sent: storage hosts get pools of their own.

Downloads run on the event loop (`VideoDownloads`): when a thousand tasks end together, a
thousand downloads share keep-alive connections to the storage host and stream to disk as
bytes arrive. Blocking transfers on a thread pool, a new connection each, waited seconds
for their turn (docs/benchmarks.md, "The gateway").
"""

from __future__ import annotations

import os
from collections import OrderedDict
from pathlib import Path
from typing import IO, Final

import httpx

from runbase.outbound import allow_all, checked_addresses, public_only
from runbase.providers.base import TaskFailed
from runbase.providers.http_pool import ClientPool, Headers

__all__ = ["MAX_VIDEO_BYTES", "VideoDownloads"]

MAX_VIDEO_BYTES: Final = 512 * 1024 * 1024
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
_MAX_REDIRECTS: Final = 3
# Storage hosts a gateway keeps connections to: a provider serves its videos from one or a
# few; beyond this many, the least recently used origin's connections are closed.
_MAX_ORIGINS: Final = 16


class VideoDownloads:
    """Keep-alive connections to the hosts that serve providers' videos, one pool per
    provider and origin (a provider's pools apply its `allow_private_hosts`)."""

    def __init__(self, connections_per_origin: int = 32) -> None:
        self._pools: OrderedDict[tuple[str, str], ClientPool] = OrderedDict()
        self._connections_per_origin = connections_per_origin

    async def fetch(
        self,
        url: str,
        output: Path,
        *,
        provider: str,
        allow_private_hosts: bool,
        timeout_s: float,
        max_bytes: int = MAX_VIDEO_BYTES,
    ) -> None:
        """Stream the video at `url` to `output`; raises `TaskFailed` in words for the user."""
        partial = output.with_suffix(".part")
        output.parent.mkdir(parents=True, exist_ok=True)
        try:
            await self._follow(url, partial, provider, allow_private_hosts, timeout_s, max_bytes)
        except httpx.TimeoutException as exc:
            partial.unlink(missing_ok=True)
            raise TaskFailed(f"downloading the {provider} video took too long") from exc
        except (httpx.TransportError, httpx.InvalidURL) as exc:
            partial.unlink(missing_ok=True)
            raise TaskFailed(
                f"downloading the {provider} video failed: {type(exc).__name__}"
            ) from exc
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        os.replace(partial, output)

    async def aclose(self) -> None:
        for pool in self._pools.values():
            await pool.aclose()
        self._pools.clear()

    async def _follow(
        self,
        url: str,
        partial: Path,
        provider: str,
        allow_private_hosts: bool,
        timeout_s: float,
        max_bytes: int,
    ) -> None:
        current = httpx.URL(url)
        left = timeout_s  # one deadline for all hops; a wait for a free connection is free
        for _ in range(_MAX_REDIRECTS + 1):
            if current.scheme not in ("http", "https") or not current.host:
                raise TaskFailed(f"{provider} returned a video link that is not http(s)")
            if left <= 0:
                raise httpx.ReadTimeout(f"the {timeout_s:g} s deadline passed")
            pool = await self._pool(provider, allow_private_hosts, current)
            with _VideoFile(partial, provider, max_bytes) as video:
                left -= await pool.stream(current.raw_path.decode("ascii"), video, timeout=left)
            if video.location is None:
                return
            current = current.join(video.location)
        raise TaskFailed(f"the {provider} video link redirected too many times")

    async def _pool(self, provider: str, allow_private_hosts: bool, url: httpx.URL) -> ClientPool:
        origin = f"{url.scheme}://{url.netloc.decode('ascii')}"
        key = (provider, origin)
        pool = self._pools.get(key)
        if pool is not None:
            self._pools.move_to_end(key)
            return pool
        refused = f"the {provider} video link points at a non-public address; refused: "
        check = allow_all if allow_private_hosts else public_only(lambda r: TaskFailed(refused + r))

        async def resolve(host: str, port: int) -> list[str]:
            return await checked_addresses(host, port, check)

        # Every download gives its own deadline; the pool's timeout is never used.
        pool = ClientPool(
            base_url=origin,
            headers={},
            timeout=3600.0,
            max_connections=self._connections_per_origin,
            resolve=resolve,
        )
        self._pools[key] = pool
        while len(self._pools) > _MAX_ORIGINS:
            _, oldest = self._pools.popitem(last=False)
            await oldest.aclose()
        return pool


class _VideoFile:
    """The body of a 200 answer, streamed to `partial` within `max_bytes`; a redirect's
    `location`; any other answer refused as it arrives."""

    def __init__(self, partial: Path, provider: str, max_bytes: int) -> None:
        self.location: str | None = None
        self._partial = partial
        self._provider = provider
        self._max_bytes = max_bytes
        self._written = 0
        self._file: IO[bytes] | None = None

    def __enter__(self) -> _VideoFile:
        return self

    def __exit__(self, *_: object) -> None:
        if self._file is not None:
            self._file.close()

    def head(self, status: int, headers: Headers) -> None:
        fields = {name.lower(): value for name, value in headers}
        name = self._provider
        if status in _REDIRECTS and b"location" in fields:
            self.location = fields[b"location"].decode("latin-1")
            return
        if status in (403, 404, 410):
            raise TaskFailed(f"the {name} video link has expired or is gone (HTTP {status})")
        if status != 200:
            raise TaskFailed(f"downloading the {name} video failed: HTTP {status}")
        declared = fields.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self._max_bytes:
            raise TaskFailed(self._too_large())
        self._file = self._partial.open("wb")

    def write(self, chunk: bytes) -> None:
        if self._file is None:  # a redirect's body
            return
        self._written += len(chunk)
        if self._written > self._max_bytes:
            raise TaskFailed(self._too_large())
        self._file.write(chunk)

    def _too_large(self) -> str:
        return f"the {self._provider} video is larger than the download limit"
