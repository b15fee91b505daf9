"""A debug check that a write function does database work and nothing else.

`Database.write` may run a write function twice: SQLite's group commit runs a batch again,
one savepoint per write, when one write of it raises (`storage.db`). Database work rolled
back with the first try is harmless; anything else (a file written, a request sent, a
sleep) would happen twice, or hold every other writer of the batch back. So a write
function must only touch its connection.

`enable()` (the tests call it; production never does) installs an audit hook
(`sys.addaudithook`) that refuses, inside a write function, the audited operations that
are not database work: opening a file, any socket use, a sleep, starting a process. It
also refuses a write function that answers an awaitable (an `async def` passed by
mistake: its body would never run). Off, the check costs nothing.
"""

from __future__ import annotations

import contextlib
import inspect
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any, SupportsIndex

__all__ = ["NotDatabaseWork", "check_result", "enable", "inside_write", "is_enabled"]

# The audit events (https://docs.python.org/3/library/audit_events.html) that are no
# database work.
_FORBIDDEN = frozenset(
    {
        "open",
        "os.listdir",
        "os.remove",
        "os.rename",
        "os.system",
        "os.posix_spawn",
        "os.exec",
        "os.fork",
        "shutil.copyfile",
        "shutil.move",
        "socket.connect",
        "socket.getaddrinfo",
        "socket.sendto",
        "socket.bind",
        "subprocess.Popen",
        "time.sleep",
        "urllib.Request",
    }
)
_state = threading.local()
_enabled = False


class NotDatabaseWork(RuntimeError):
    """A write function did something besides database work."""


def enable() -> None:
    """Turn the check on for this process (once; it cannot be turned off)."""
    global _enabled
    if not _enabled:
        sys.addaudithook(_hook)
        if sys.version_info < (3, 12):  # `time.sleep` is audited from Python 3.12 on
            time.sleep = _audited_sleep
        _enabled = True


def is_enabled() -> bool:
    return _enabled


@contextlib.contextmanager
def inside_write() -> Iterator[None]:
    """Mark this thread as running a write function."""
    if not _enabled:
        yield
        return
    _state.inside = True
    try:
        yield
    finally:
        _state.inside = False


def check_result(result: Any) -> None:
    """Refuse a write function's answer that is an awaitable (work it never did)."""
    if _enabled and inspect.isawaitable(result):
        if inspect.iscoroutine(result):
            result.close()
        raise NotDatabaseWork("a write function must be a plain function, not async")


_sleep = time.sleep


def _audited_sleep(seconds: float | SupportsIndex) -> None:
    _hook("time.sleep", (seconds,))
    _sleep(seconds)


def _hook(event: str, args: tuple[Any, ...]) -> None:
    if event in _FORBIDDEN and getattr(_state, "inside", False):
        raise NotDatabaseWork(
            f"a write function may only do database work (group commit may run it twice); "
            f"it called {event}{args!r:.200}"
        )
