"""What a provider is asked to make for a run: worked out once per claim, the same for
every provider of the route.

    job_basis(run, settings, log)   the exact output: aspect ratio (the first image's,
                                    when the user gave images and no ratio), size, frame
                                    count, audio, a concrete seed; images are fetched and
                                    checked as for a compute engine (a bad one is the
                                    user's fault: `InvalidImage`, refunded)
    make_job(...)                   one attempt's `ProviderJob`
    record_accepted / record_success  an attempt's writes that carry the run's logs along
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection

from runbase.config import Settings
from runbase.core import attempts, runs
from runbase.core.attempts import Attempt
from runbase.core.catalog import find_model
from runbase.media.images import FetchPolicy, fetch_image
from runbase.providers import (
    AttemptState,
    ContentRefused,
    InputUnsupported,
    NotAccepted,
    Provider,
    ProviderFailure,
    ProviderJob,
    RunLog,
    SubmitUncertain,
    TaskFailed,
)


@dataclass(frozen=True)
class JobBasis:
    """What every attempt's job shares."""

    aspect_ratio: str
    width: int
    height: int
    num_frames: int
    fps: int
    audio: bool
    seed: int


async def job_basis(
    run: Any, run_input: Mapping[str, Any], settings: Settings, log: RunLog
) -> JobBasis:
    """The exact output of `run` (a runs row), from its validated input (images restored:
    `storage.inputs.restore_images`)."""
    spec = find_model(run.model)
    validated = run_input
    ratio = validated.get("aspect_ratio")
    urls = list(validated.get("image_urls") or [])
    if urls:
        policy = FetchPolicy(
            max_bytes=spec.max_image_bytes, allow_private_hosts=settings.allow_private_image_hosts
        )
        images = await asyncio.to_thread(
            lambda: [fetch_image(url, policy, index=i) for i, url in enumerate(urls)]
        )
        if ratio is None:
            ratio = spec.nearest_aspect_ratio(*images[0].size)
            log.log(f"aspect ratio {ratio} chosen to match the first image")
    geometry = spec.output_geometry(validated, ratio)
    seed = int(validated.get("seed", -1))
    if seed == -1:  # below 2^31: fal's seed is a signed 32-bit integer
        seed = random.randrange(2**31)
        log.log(f"seed {seed}")
    return JobBasis(
        aspect_ratio=ratio or "16:9",
        width=geometry.width,
        height=geometry.height,
        num_frames=geometry.num_frames,
        fps=geometry.fps,
        audio=bool(validated.get("generate_audio", True)),
        seed=seed,
    )


def make_job(
    run: Any,
    run_input: Mapping[str, Any],
    basis: JobBasis,
    *,
    attempt: int,
    callback_url: str | None,
) -> ProviderJob:
    """One attempt's job; the idempotency key is the run id (one run never goes to one
    provider twice)."""
    return ProviderJob(
        run_id=run.id,
        attempt=attempt,
        model=run.model,
        input=run_input,
        aspect_ratio=basis.aspect_ratio,
        width=basis.width,
        height=basis.height,
        num_frames=basis.num_frames,
        fps=basis.fps,
        audio=basis.audio,
        seed=basis.seed,
        image_urls=tuple(run_input.get("image_urls") or ()),
        idempotency_key=run.id,
        callback_url=callback_url,
    )


_FAILURES: dict[str, type[ProviderFailure]] = {
    cls.error_class: cls
    for cls in (NotAccepted, TaskFailed, ContentRefused, InputUnsupported, SubmitUncertain)
}


def failure_of(attempt: Attempt) -> ProviderFailure:
    """The failure an ended attempt recorded, as its class."""
    cls = _FAILURES.get(attempt.error_class or "", TaskFailed)
    return cls(attempt.error_message or "the provider failed")


def label(provider: Provider) -> str:
    """The provider's name for users ("ModelArk"), or its short name."""
    return str(getattr(provider, "display_name", provider.name))


def record_accepted(
    connection: Connection,
    worker_id: str,
    lease_ms: int,
    attempt: Attempt,
    task_id: str,
    logs: list[str],
) -> None:
    """Record the task id (whoever holds the run now must find it) and the run's logs."""
    attempts.accept_attempt(connection, attempt.id, task_id=task_id)
    if logs:
        update_ = runs.ProgressUpdate(None, tuple(logs))
        runs.heartbeat_run(
            connection, attempt.run_id, worker_id=worker_id, lease_ms=lease_ms, update_=update_
        )


def record_success(
    connection: Connection,
    worker_id: str,
    job: ProviderJob,
    attempt: Attempt,
    key: str,
    cost: int,
    logs: list[str],
) -> bool:
    """The attempt's end and the run's success, in one transaction."""
    attempts.end_attempt(
        connection, attempt.id, state=AttemptState.SUCCEEDED.value, cost_micros=cost
    )
    return runs.succeed_run(
        connection,
        job.run_id,
        worker_id=worker_id,
        output_keys=[key],
        backend=attempt.provider,
        logs=logs,
    )
