"""What the provider tests share: a job for the contract's input, a run log that keeps
its lines, and a loop that drives one provider task to its end as the runtime does."""

from __future__ import annotations

import asyncio
from typing import Any

from runbase.core.seedance import FPS, SIZES
from runbase.providers import Finished, Output, Provider, ProviderJob


class KeptLog:
    """A RunLog that keeps what it is told."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.stages: list[str] = []

    def log(self, message: str) -> None:
        self.lines.append(message)

    def progress(self, fraction: float, stage: str = "") -> None:
        self.stages.append(stage)


def make_job(
    run_id: str = "run_test1", *, callback_url: str | None = None, **input: Any
) -> ProviderJob:
    values: dict[str, Any] = {
        "prompt": "a red fox",
        "aspect_ratio": "16:9",
        "resolution": "480p",
        "duration": "4",
        "generate_audio": True,
        "image_urls": [],
        **input,
    }
    width, height = SIZES[(values["resolution"], values["aspect_ratio"])]
    seed = values.get("seed", -1)
    return ProviderJob(
        run_id=run_id,
        attempt=1,
        model="bytedance/seedance-1.5-pro",
        input=values,
        aspect_ratio=values["aspect_ratio"],
        width=width,
        height=height,
        num_frames=FPS * int(values["duration"]) + 1,
        fps=FPS,
        audio=bool(values["generate_audio"]),
        seed=seed if seed >= 0 else 1234,
        image_urls=tuple(values["image_urls"]),
        idempotency_key=run_id,
        callback_url=callback_url,
    )


async def run_to_end(provider: Provider, task_id: str, log: KeptLog, limit_s: float = 20) -> Output:
    """Poll until finished (raising what the provider raises), then read the result."""
    async with asyncio.timeout(limit_s):
        while not isinstance(await provider.poll(task_id, log), Finished):
            await asyncio.sleep(0.05)
    return await provider.result(task_id, log)
