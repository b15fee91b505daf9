"""`BatchedReads`: the polls of many runs at one provider gathered into a few requests.

A gateway with a thousand tasks at ModelArk polls each every few seconds: hundreds of GETs
a second that the provider must answer and counts against its rate limit, and that queue
behind one another for runbase's connections, so that the poll which finds a task done
comes back late. ModelArk's task list takes many task ids at once (`filter.task_ids`): the
polls that fall due within `window_s` of the first go out as one request of up to
`max_batch` ids. Each caller still awaits its own task's answer, on its own schedule.

    reads = BatchedReads(fetch, max_batch=100, window_s=0.1)
    item = await reads.read(task_id)   # this task's item, or None when the batch lacked it

`fetch(keys)` answers the items it found by key; when it raises, every caller of that
batch gets the exception. A caller canceled while it waits leaves the batch unharmed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Generic, TypeVar

__all__ = ["BatchedReads"]

T = TypeVar("T")


class BatchedReads(Generic[T]):
    def __init__(
        self,
        fetch: Callable[[Sequence[str]], Awaitable[Mapping[str, T]]],
        *,
        max_batch: int,
        window_s: float,
    ) -> None:
        self._fetch = fetch
        self.max_batch = max_batch
        self.window_s = window_s
        self._waiting: dict[str, list[asyncio.Future[T | None]]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._requests: set[asyncio.Task[None]] = set()

    async def read(self, key: str) -> T | None:
        """`key`'s item from the next batch, or None when the batch did not return it."""
        future: asyncio.Future[T | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append(future)
        if len(self._waiting) >= self.max_batch:
            self._send()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(self.window_s, self._send)
        return await future

    async def close(self) -> None:
        """Stop: callers still waiting are canceled."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        for futures in self._waiting.values():
            for future in futures:
                future.cancel()
        self._waiting = {}
        for request in list(self._requests):
            request.cancel()
        await asyncio.gather(*self._requests, return_exceptions=True)

    def _send(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        batch, self._waiting = self._waiting, {}
        if batch:
            request = asyncio.get_running_loop().create_task(self._answer(batch))
            self._requests.add(request)
            request.add_done_callback(self._requests.discard)

    async def _answer(self, batch: dict[str, list[asyncio.Future[T | None]]]) -> None:
        try:
            found = await self._fetch(list(batch))
        except asyncio.CancelledError:
            for futures in batch.values():
                for future in futures:
                    future.cancel()
            raise
        except Exception as exc:  # every caller of the batch hears of it
            for futures in batch.values():
                for future in futures:
                    if not future.done():
                        future.set_exception(exc)
            return
        for key, futures in batch.items():
            for future in futures:
                if not future.done():
                    future.set_result(found.get(key))
