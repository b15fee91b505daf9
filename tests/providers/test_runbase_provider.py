"""The runbase provider against a real second runbase (`runbase serve`, not a fake) with
the default limit of 20 requests per 10 s: many runs at once share that budget and all
succeed, 429s are ridden out, the Idempotency-Key replays the same upstream run, cancel and
callbacks use the upstream's extensions, and each failure keeps its class."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from provider_support import KeptLog, make_job, run_to_end
from pydantic import SecretStr

from runbase.core.webhooks import sign
from runbase.media.probe import probe
from runbase.providers import AttemptState, CallbackRequest, ContentRefused, Pacing
from runbase.providers.runbase import RunbaseProvider
from upstream_runbase import Upstream, upstream_runbase

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Upstream]:
    with upstream_runbase(tmp_path_factory.mktemp("upstream")) as served:
        yield served


def make_provider(
    upstream: Upstream, rate_limit: str = "20/10seconds", *, api_key: str | None = None
) -> RunbaseProvider:
    return RunbaseProvider(
        api_key=SecretStr(api_key or upstream.api_key),
        base_url=upstream.base_url,
        rate_limit=rate_limit,
        pacing=Pacing(poll_interval_s=0.5, allow_private_hosts=True),
    )


@pytest.fixture
async def provider(upstream: Upstream) -> AsyncIterator[RunbaseProvider]:
    provider = make_provider(upstream)
    await provider.start()
    yield provider
    await provider.close()


async def one_run(provider: RunbaseProvider, run_id: str, **input: object) -> str:
    log = KeptLog()
    task = await provider.submit(make_job(run_id, **input), log)
    output = await run_to_end(provider, task, log, limit_s=120)
    return output.video_url


async def test_twenty_runs_at_once_share_the_rate_limit(
    provider: RunbaseProvider, tmp_path: Path
) -> None:
    assert provider.is_runbase and provider.accepts_idempotency_key
    started = time.monotonic()
    urls = await asyncio.gather(*(one_run(provider, f"run_many{i}") for i in range(20)))
    assert len(set(urls)) == 20
    assert provider.pacer is not None and provider.pacer.throttled == 0
    video = tmp_path / "one.mp4"
    video.write_bytes(httpx.get(urls[0]).content)
    info = probe(video)
    assert info.video is not None and (info.video.width, info.video.height) == (864, 496)
    # 20 creates and at least 20 gets in 10-s windows of 20: more than 10 s in all.
    assert time.monotonic() - started > 10


async def test_429s_from_a_faster_pace_are_ridden_out(upstream: Upstream) -> None:
    provider = make_provider(upstream, rate_limit="200/10seconds")  # faster than allowed
    await provider.start()
    try:
        urls = await asyncio.gather(*(one_run(provider, f"run_fast{i}") for i in range(12)))
    finally:
        await provider.close()
    assert len(urls) == 12
    assert provider.pacer is not None and provider.pacer.throttled > 0


async def test_the_idempotency_key_replays_the_same_run(
    provider: RunbaseProvider, upstream: Upstream
) -> None:
    job = make_job("run_replayed", seed=42, camera_fixed=True)
    first = await provider.submit(job, KeptLog())
    again = await provider.submit(job, KeptLog())  # as after a crash before the record
    assert first == again
    sent = provider.create_body(job)
    assert sent["input"]["seed"] == 42 and sent["input"]["camera_fixed"] is True


async def test_failures_keep_their_class(provider: RunbaseProvider) -> None:
    # The upstream's QuickEngine succeeds; an image it cannot read is the user's fault.
    with pytest.raises(ContentRefused):
        await one_run(provider, "run_badimage", image_urls=["http://127.0.0.1:9/missing.png"])
    assert provider.cost_micros(make_job(), None, AttemptState.FAILED) == 0


async def test_callbacks_are_checked_with_the_upstream_secret(
    provider: RunbaseProvider, upstream: Upstream
) -> None:
    secret = httpx.get(
        upstream.base_url + "/api/v1/webhooks/secret",
        headers={"Authorization": f"Bearer {upstream.api_key}"},
    ).json()["key"]
    body = json.dumps({"id": "run_x", "status": "succeeded"}).encode()
    stamp = int(time.time())
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(secret, "msg_1", stamp, body),
    }
    assert await provider.read_callback(CallbackRequest(headers, body)) == "run_x"
    forged = dict(headers, **{"webhook-signature": sign("whsec_" + "A" * 44, "msg_1", stamp, body)})
    assert await provider.read_callback(CallbackRequest(forged, body)) is None


def webhook_headers(secret: str, body: bytes) -> dict[str, str]:
    stamp = int(time.time())
    return {
        "webhook-id": "msg_2",
        "webhook-timestamp": str(stamp),
        "webhook-signature": sign(secret, "msg_2", stamp, body),
    }


async def test_a_test_key_upstream_makes_test_runs_and_signs_with_the_test_secret(
    upstream: Upstream,
) -> None:
    """With an upstream test key the provider still finds a runbase (the route answers a
    test key with the account's test secret, which signs its test runs' webhooks): runs
    are test runs there, free, and only the test secret's signatures are believed."""
    secrets = {
        name: httpx.get(
            upstream.base_url + "/api/v1/webhooks/secret",
            headers={"Authorization": f"Bearer {key}"},
        ).json()["key"]
        for name, key in (("live", upstream.api_key), ("test", upstream.test_key))
    }
    assert secrets["live"] != secrets["test"]
    provider = make_provider(upstream, api_key=upstream.test_key)
    await provider.start()
    try:
        assert provider.is_runbase and provider.accepts_idempotency_key
        body = json.dumps({"id": "run_t", "status": "succeeded"}).encode()
        test_signed = CallbackRequest(webhook_headers(secrets["test"], body), body)
        assert await provider.read_callback(test_signed) == "run_t"
        live_signed = CallbackRequest(webhook_headers(secrets["live"], body), body)
        assert await provider.read_callback(live_signed) is None
        balance = upstream.admin.balance(upstream.account_id)
        log = KeptLog()
        task = await provider.submit(make_job("run_testkey"), log)
        await run_to_end(provider, task, log, limit_s=120)
    finally:
        await provider.close()
    [made] = [run for run in upstream.admin.runs() if run.id == task]
    assert made.is_test and made.status == "succeeded"
    assert upstream.admin.balance(upstream.account_id) == balance  # the live balance: untouched
