"""`BatchedReads` on its own: who shares a request, and what each waiter hears when the
request fails or a waiter goes away."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence

import pytest

from runbase.providers.batched_reads import BatchedReads


class Upstream:
    def __init__(self) -> None:
        self.requests: list[list[str]] = []
        self.fail: Exception | None = None
        self.delay_s = 0.0

    async def fetch(self, keys: Sequence[str]) -> Mapping[str, str]:
        self.requests.append(list(keys))
        await asyncio.sleep(self.delay_s)
        if self.fail is not None:
            raise self.fail
        return {key: key.upper() for key in keys if key != "missing"}


async def test_reads_within_the_window_share_a_request_and_get_their_own_answer() -> None:
    upstream = Upstream()
    reads = BatchedReads(upstream.fetch, max_batch=10, window_s=0.05)
    answers = await asyncio.gather(reads.read("a"), reads.read("b"), reads.read("a"))
    assert answers == ["A", "B", "A"]
    assert upstream.requests == [["a", "b"]]  # the same key asked twice is asked once
    assert await reads.read("missing") is None
    assert len(upstream.requests) == 2


async def test_a_full_batch_goes_at_once() -> None:
    upstream = Upstream()
    reads = BatchedReads(upstream.fetch, max_batch=3, window_s=30)  # the window never ends
    async with asyncio.timeout(5):
        answers = await asyncio.gather(*(reads.read(key) for key in "abc"))
    assert answers == ["A", "B", "C"] and upstream.requests == [["a", "b", "c"]]


async def test_a_failed_request_reaches_every_waiter_of_its_batch() -> None:
    upstream = Upstream()
    upstream.fail = ConnectionError("down")
    reads = BatchedReads(upstream.fetch, max_batch=10, window_s=0.01)
    results = await asyncio.gather(reads.read("a"), reads.read("b"), return_exceptions=True)
    assert [type(result) for result in results] == [ConnectionError, ConnectionError]
    upstream.fail = None
    assert await reads.read("a") == "A"  # the next batch is not poisoned


async def test_a_waiter_that_goes_away_leaves_the_others_their_answers() -> None:
    upstream = Upstream()
    upstream.delay_s = 0.1
    reads = BatchedReads(upstream.fetch, max_batch=10, window_s=0.01)
    leaving = asyncio.ensure_future(reads.read("a"))
    staying = asyncio.ensure_future(reads.read("b"))
    await asyncio.sleep(0.05)  # the request is out
    leaving.cancel()
    assert await staying == "B"
    with pytest.raises(asyncio.CancelledError):
        await leaving


async def test_close_cancels_whoever_still_waits() -> None:
    upstream = Upstream()
    upstream.delay_s = 10
    reads = BatchedReads(upstream.fetch, max_batch=10, window_s=0.01)
    sent = asyncio.ensure_future(reads.read("a"))
    await asyncio.sleep(0.05)
    unsent = asyncio.ensure_future(reads.read("b"))
    await asyncio.sleep(0)
    async with asyncio.timeout(5):
        await reads.close()
        results = await asyncio.gather(sent, unsent, return_exceptions=True)
    assert [type(result) for result in results] == [asyncio.CancelledError] * 2
