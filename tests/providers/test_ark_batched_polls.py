"""Polls of many ModelArk tasks gathered into list requests (`filter.task_ids`), against the
fake ModelArk over real HTTP: fewer requests for the same reads, each task still answered
as its own GET would answer it, and every way the list can fail falling back to those GETs.
The runs through a live runbase are in the gateway tests (dispatch/test_gateway_*.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from provider_support import KeptLog, make_job
from pydantic import SecretStr

from fakes.modelark import FakeModelArk
from provider_routes import ARK_KEY
from runbase.providers import Finished, Pacing, Running, TaskFailed, TokenPrices
from runbase.providers.ark import ArkProvider


@pytest.fixture
def fake(start_ark: Callable[..., FakeModelArk]) -> FakeModelArk:
    return start_ark(queued_seconds=1.0, running_seconds=1.0)


@pytest.fixture
async def provider(fake: FakeModelArk) -> AsyncIterator[ArkProvider]:
    provider = ArkProvider(
        api_key=SecretStr(ARK_KEY),
        base_url=fake.base_url + "/api/v3",
        model="seedance-1-5-pro-251215",
        prices=TokenPrices(silent=1_200_000, audio=2_400_000),
        pacing=Pacing(poll_interval_s=0.4, allow_private_hosts=True),
    )
    await provider.start()
    yield provider
    await provider.close()


async def submit_many(provider: ArkProvider, count: int) -> list[str]:
    jobs = [make_job(f"run_batch{i}", generate_audio=False) for i in range(count)]
    return [await provider.submit(job, KeptLog()) for job in jobs]


async def poll_all(provider: ArkProvider, task_ids: list[str]) -> list[object]:
    async def one(task_id: str) -> object:
        try:
            return await provider.poll(task_id, KeptLog())
        except TaskFailed as failed:
            return failed

    return list(await asyncio.gather(*(one(task_id) for task_id in task_ids)))


async def test_polls_due_together_share_one_list_request(
    fake: FakeModelArk, provider: ArkProvider
) -> None:
    task_ids = await submit_many(provider, 12)
    assert [type(s) for s in await poll_all(provider, task_ids)] == [Running] * 12
    assert (fake.list_requests, fake.task_gets) == (1, 0)
    assert sorted(task_id for task_id, _ in fake.polls) == sorted(task_ids)

    fake.advance(2.5)
    assert [type(s) for s in await poll_all(provider, task_ids)] == [Finished] * 12
    assert (fake.list_requests, fake.task_gets) == (2, 0)
    outputs = [await provider.result(task_id, KeptLog()) for task_id in task_ids]
    assert len({output.video_url for output in outputs}) == 12
    assert all(output.usage["completion_tokens"] > 0 for output in outputs)
    assert fake.task_gets == 0  # the list's task objects served the results too


async def test_a_batch_is_split_at_its_limit(fake: FakeModelArk, provider: ArkProvider) -> None:
    task_ids = await submit_many(provider, 130)
    await poll_all(provider, task_ids)
    assert (fake.list_requests, fake.task_gets) == (2, 0)  # 100 ids, then the other 30


async def test_a_task_alone_is_read_by_its_own_get(
    fake: FakeModelArk, provider: ArkProvider
) -> None:
    [task_id] = await submit_many(provider, 1)
    assert isinstance(await provider.poll(task_id, KeptLog()), Running)
    assert (fake.list_requests, fake.task_gets) == (0, 1)


async def test_a_task_the_list_lacks_is_read_alone_and_its_loss_told(
    fake: FakeModelArk, provider: ArkProvider
) -> None:
    task_ids = await submit_many(provider, 3)
    fake.tasks[task_ids[0]].deleted = True  # gone upstream: the list leaves it out
    fake.fail_next("InternalServiceError", "the model crashed")
    failing = await provider.submit(make_job("run_batch_failing"), KeptLog())
    fake.advance(2.5)
    states = await poll_all(provider, [*task_ids, failing])
    assert isinstance(states[0], TaskFailed) and "no longer found" in states[0].message
    assert [type(s) for s in states[1:3]] == [Finished, Finished]
    assert isinstance(states[3], TaskFailed) and "InternalServiceError" in states[3].message
    assert (fake.list_requests, fake.task_gets) == (1, 1)


@pytest.mark.parametrize("status", [400, 404, 405])
async def test_a_refused_list_turns_batching_off(
    fake: FakeModelArk, provider: ArkProvider, status: int
) -> None:
    fake.lists_refused_with = status
    task_ids = await submit_many(provider, 4)
    assert [type(s) for s in await poll_all(provider, task_ids)] == [Running] * 4
    assert (fake.list_requests, fake.task_gets) == (1, 4)
    fake.advance(2.5)
    assert [type(s) for s in await poll_all(provider, task_ids)] == [Finished] * 4
    assert (fake.list_requests, fake.task_gets) == (1, 8)  # never asked for a list again


async def test_a_busy_list_is_ridden_out_then_retried_as_a_list(
    fake: FakeModelArk, provider: ArkProvider
) -> None:
    task_ids = await submit_many(provider, 5)
    fake.too_many_requests(2)  # the list is answered 429 twice, then served
    fake.advance(2.5)
    assert [type(s) for s in await poll_all(provider, task_ids)] == [Finished] * 5
    assert (fake.list_requests, fake.task_gets) == (1, 0)
