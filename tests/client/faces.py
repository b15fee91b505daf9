"""The SDK's two faces, driven by the same test code.

`Runbase` is used as it is. `AsyncRunbase` is wrapped in `Blocking`, which runs every
coroutine the client returns to completion on the wrapper's own event loop: the async code
runs for real (its own httpx.AsyncClient, its own `await asyncio.sleep`), only the test
that calls it is synchronous.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

from runbase.client import AsyncRunbase, Runbase

FACES = ("sync", "async")


def _has_coroutine_methods(value: Any) -> bool:
    kind = type(value)
    return any(
        inspect.iscoroutinefunction(getattr(kind, name, None))
        for name in dir(kind)
        if not name.startswith("__")
    )


class Blocking:
    """An async object seen through synchronous eyes (see the module docstring)."""

    def __init__(self, target: Any, loop: asyncio.AbstractEventLoop) -> None:
        self._target = target
        self._loop = loop

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if callable(value) and not isinstance(value, type):
            return lambda *args, **kwargs: self._adopt(value(*args, **kwargs))
        return self._adopt(value)

    def _adopt(self, value: Any) -> Any:
        if inspect.isawaitable(value):
            value = self._loop.run_until_complete(value)
        return Blocking(value, self._loop) if _has_coroutine_methods(value) else value

    def __eq__(self, other: object) -> bool:
        return bool(self._target == (other._target if isinstance(other, Blocking) else other))

    def __hash__(self) -> int:
        return hash(self._target)

    def __enter__(self) -> Blocking:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_client(face: str, *args: Any, **kwargs: Any) -> Any:
    """A `Runbase`, or an `AsyncRunbase` behind `Blocking` with an event loop of its own."""
    if face == "sync":
        return Runbase(*args, **kwargs)
    loop = asyncio.new_event_loop()
    client = Blocking(AsyncRunbase(*args, **kwargs), loop)
    close = client._target.close

    async def close_and_stop() -> None:
        await close()

    def shut() -> None:
        if not loop.is_closed():
            loop.run_until_complete(close_and_stop())
            loop.close()

    client.close = shut  # type: ignore[method-assign]
    return client


Connect = Callable[..., Any]
