"""Downloading a provider's video at once (upstream links expire), safely.

The link comes from the provider, not from a user, but a compromised or spoofed answer must
not turn the worker into a proxy into our own network: connections go only to public
addresses (`runbase.outbound`), checked as they are opened, redirects followed by hand
through the same check, within a size cap and one deadline for the whole transfer. The
provider's API key is never sent: the storage host gets a pool of its own.

The transfer is blocking (httpcore through the checked backend), so the runtime runs it on
a small thread pool of its own (`download_video`), never on the event loop.
"""

from __future__ import annotations

import asyncio
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Final

import httpcore
import httpx

from runbase.outbound import Deadline, allow_all, checked_pool, public_only
from runbase.providers.base import TaskFailed

__all__ = ["MAX_VIDEO_BYTES", "download_video"]

MAX_VIDEO_BYTES: Final = 512 * 1024 * 1024
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
# A download waits on the network, not the CPU: a few at once, apart from the default
# executor that the database and the blob store use, so that stuck downloads (each bounded
# by its deadline) cannot starve them.
_POOL: Final = ThreadPoolExecutor(max_workers=16, thread_name_prefix="runbase-download")


async def download_video(
    url: str,
    output: Path,
    *,
    provider: str,
    allow_private_hosts: bool,
    timeout_s: float,
    max_bytes: int = MAX_VIDEO_BYTES,
) -> None:
    """Stream the video at `url` to `output`; raises `TaskFailed` in words for the user."""
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(
        _POOL, _download, url, output, provider, allow_private_hosts, timeout_s, max_bytes
    )


def _download(
    url: str,
    output: Path,
    provider: str,
    allow_private_hosts: bool,
    timeout_s: float,
    max_bytes: int,
) -> None:
    current = httpx.URL(url)
    partial = output.with_suffix(".part")
    output.parent.mkdir(parents=True, exist_ok=True)
    refused = f"the {provider} video link points at a non-public address; refused: "
    check = allow_all if allow_private_hosts else public_only(lambda r: TaskFailed(refused + r))
    transfer = Deadline(timeout_s)
    with checked_pool(check, transfer) as pool:
        for _ in range(4):
            if current.scheme not in ("http", "https") or not current.host:
                raise TaskFailed(f"{provider} returned a video link that is not http(s)")
            target = httpcore.URL(
                scheme=current.raw_scheme,
                host=current.raw_host,
                port=current.port,
                target=current.raw_path,
            )
            try:
                with pool.stream(
                    "GET", target, extensions={"timeout": transfer.timeouts()}
                ) as response:
                    headers = {name.lower(): value for name, value in response.headers}
                    if response.status in _REDIRECTS and b"location" in headers:
                        current = current.join(headers[b"location"].decode("latin-1"))
                        continue
                    if response.status in (403, 404, 410):
                        raise TaskFailed(
                            f"the {provider} video link has expired or is gone "
                            f"(HTTP {response.status})"
                        )
                    if response.status != 200:
                        raise TaskFailed(
                            f"downloading the {provider} video failed: HTTP {response.status}"
                        )
                    _save(response, headers, partial, provider, max_bytes)
                    os.replace(partial, output)
                    return
            except httpcore.TimeoutException as exc:
                partial.unlink(missing_ok=True)
                raise TaskFailed(f"downloading the {provider} video took too long") from exc
            except (httpcore.NetworkError, httpcore.ProtocolError, httpx.InvalidURL) as exc:
                partial.unlink(missing_ok=True)
                raise TaskFailed(
                    f"downloading the {provider} video failed: {type(exc).__name__}"
                ) from exc
            except TaskFailed:
                partial.unlink(missing_ok=True)
                raise
    raise TaskFailed(f"the {provider} video link redirected too many times")


def _save(
    response: httpcore.Response,
    headers: dict[bytes, bytes],
    partial: Path,
    provider: str,
    max_bytes: int,
) -> None:
    too_large = f"the {provider} video is larger than the download limit"
    declared = headers.get(b"content-length", b"")
    if declared.isdigit() and int(declared) > max_bytes:
        raise TaskFailed(too_large)
    written = 0
    with partial.open("wb") as file:
        for chunk in response.iter_stream():
            written += len(chunk)
            if written > max_bytes:
                raise TaskFailed(too_large)
            file.write(chunk)
