"""The run object, as typed values.

A `Run` is a snapshot: the state the server reported when it was read. It never changes
after that; ask the client again (`client.runs.get(run.id)`) for a newer one. `Run` and
`AsyncRun` differ only in `download`, which is blocking on one and awaitable on the other.

Money says its unit in its name: `cost_micro_usd` is integer micro-USD (1 USD = 1,000,000),
the API's `costUsd`. `cost_usd`, its old name, still answers the same number, with a
`DeprecationWarning`.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar

ProgressCallback = Callable[[int, int | None], None]
"""Called as `on_progress(bytes_done, bytes_total)` while a file downloads (total may be None)."""


class RunStatus(StrEnum):
    """Where a run is in its life: pending → processing → succeeded, failed or canceled."""

    PENDING = "pending"  # created and charged; no worker has it yet
    PROCESSING = "processing"  # a worker is generating it
    SUCCEEDED = "succeeded"  # done; output.urls holds the video
    FAILED = "failed"  # done; error says why, and the cost was refunded
    CANCELED = "canceled"  # done: its owner canceled it (a runbase extension); refunded

    @property
    def is_finished(self) -> bool:
        return self in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELED)


@dataclass(frozen=True)
class ErrorDetail:
    """Why a run failed: the same `{message, code}` shape as API errors."""

    message: str
    code: str


@dataclass(frozen=True)
class RunOutput:
    """What a succeeded run made: direct (signed, expiring) links, the video first."""

    urls: tuple[str, ...]


@dataclass(frozen=True, kw_only=True)
class _RunFields:
    id: str
    model: str
    status: RunStatus
    input: Mapping[str, Any]
    output: RunOutput | None
    error: ErrorDetail | None
    cost_micro_usd: int
    """The price in micro-USD (1 USD = 1,000,000), fixed at creation: the API's `costUsd`."""
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    backend: str | None = None
    """The engine that made the run (a runbase extension; None from other servers)."""
    progress: float | None = None
    """0 to 1 while processing (a runbase extension; None from other servers)."""
    logs: tuple[str, ...] = ()
    raw: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)
    """The JSON object as the server sent it, including fields this SDK does not know."""

    @property
    def is_finished(self) -> bool:
        """True once the run has succeeded, failed or been canceled; it will not change again."""
        return self.status.is_finished

    @property
    def cost_usd(self) -> int:
        """Deprecated: the price in **micro**-USD; read `cost_micro_usd`, the same number."""
        warnings.warn(
            "Run.cost_usd holds micro-USD; read Run.cost_micro_usd (the same number)",
            DeprecationWarning,
            stacklevel=2,
        )
        return self.cost_micro_usd

    @property
    def output_url(self) -> str | None:
        """The first output URL (the video), or None before the run has succeeded."""
        return self.output.urls[0] if self.output and self.output.urls else None

    def _target_path(self, path: str | os.PathLike[str] | None) -> Path:
        """Where to write: `path`, `<id>.mp4` inside it if it is a directory, or `./<id>.mp4`."""
        target = Path(path) if path is not None else Path(f"{self.id}.mp4")
        return target / f"{self.id}.mp4" if target.is_dir() else target


class _RunDownloader(Protocol):
    def download(
        self,
        run: Run,
        path: str | os.PathLike[str] | None = None,
        *,
        on_progress: ProgressCallback | None = None,
    ) -> Path: ...


class _AsyncRunDownloader(Protocol):
    async def download(
        self,
        run: AsyncRun,
        path: str | os.PathLike[str] | None = None,
        *,
        on_progress: ProgressCallback | None = None,
    ) -> Path: ...


@dataclass(frozen=True, kw_only=True)
class Run(_RunFields):
    """A run as `Runbase` read it.

    Example:
        >>> run = client.runs.get("run_01jf0c4t3m9x8r2q5v7w6y1z0a")
        >>> run.status, run.progress
        (<RunStatus.SUCCEEDED: 'succeeded'>, 1.0)
        >>> run.download("lamp.mp4")
        PosixPath('lamp.mp4')
    """

    _runs: _RunDownloader = field(repr=False, compare=False)

    def download(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        on_progress: ProgressCallback | None = None,
    ) -> Path:
        """Save the video to `path` (default `./<id>.mp4`) and return where it went.

        Raises `RunFailed` for a failed run and `RunNotFinished` for one still running.
        """
        return self._runs.download(self, path, on_progress=on_progress)


@dataclass(frozen=True, kw_only=True)
class AsyncRun(_RunFields):
    """A run as `AsyncRunbase` read it; `await run.download(path)` saves the video."""

    _runs: _AsyncRunDownloader = field(repr=False, compare=False)

    async def download(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        on_progress: ProgressCallback | None = None,
    ) -> Path:
        """Save the video to `path` (default `./<id>.mp4`) and return where it went."""
        return await self._runs.download(self, path, on_progress=on_progress)


AnyRun = TypeVar("AnyRun", Run, AsyncRun)


@dataclass(frozen=True)
class RunPage(Generic[AnyRun]):
    """One page of `client.runs.list(...)`, newest first."""

    data: tuple[AnyRun, ...]
    next_cursor: str | None
    """Pass it as `cursor` for the next page; None on the last one."""


def read_run_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    """The keyword arguments of `Run`/`AsyncRun` from a run object as JSON."""
    output = data.get("output")
    error = data.get("error")
    progress = data.get("progress")
    return {
        "id": data["id"],
        "model": data["model"],
        "status": RunStatus(data["status"]),
        "input": data.get("input") or {},
        "output": RunOutput(tuple(output.get("urls") or ())) if output else None,
        "error": ErrorDetail(str(error.get("message", "")), str(error.get("code", "")))
        if error
        else None,
        "cost_micro_usd": int(data.get("costUsd") or 0),
        "created_at": _read_timestamp(data.get("createdAt")),
        "started_at": _read_optional_timestamp(data.get("startedAt")),
        "completed_at": _read_optional_timestamp(data.get("completedAt")),
        "backend": data.get("backend"),
        "progress": float(progress) if progress is not None else None,
        "logs": tuple(data.get("logs") or ()),
        "raw": dict(data),
    }


def _read_timestamp(value: Any) -> datetime:
    # Python 3.11's fromisoformat reads the contract's "2026-06-01T12:00:00.000Z".
    return datetime.fromisoformat(value)


def _read_optional_timestamp(value: Any) -> datetime | None:
    return _read_timestamp(value) if value else None
