"""More providers for route tests: the ModelArk provider under other names, each pointed at
a fake ModelArk of its own (`RUNBASE_TEST_<NAME>_BASE_URL`), so that a route of two or three
providers can be driven with fakes whose every create is counted. Loaded by import reference
(`provider_fixtures:ArkB`), as any provider class can be."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from runbase.config import Settings
from runbase.providers import Finished, InputUnsupported, ProviderJob, RunLog, Running
from runbase.providers.ark import ArkProvider


class _Renamed(ArkProvider):
    env = ""

    @classmethod
    def from_settings(cls, settings: Settings) -> ArkProvider:
        provider = super().from_settings(settings)
        provider.base_url = os.environ[cls.env].rstrip("/")
        return provider


class ArkB(_Renamed):
    name = "ark-b"
    display_name = "ModelArk B"
    env = "RUNBASE_TEST_ARK_B_BASE_URL"


class ArkC(_Renamed):
    name = "ark-c"
    display_name = "ModelArk C"
    env = "RUNBASE_TEST_ARK_C_BASE_URL"


class SmallArk(ArkB):
    """A provider that cannot make 1080p (as a provider with fewer sizes)."""

    name = "small-ark"
    display_name = "Small ModelArk"

    def check_input(self, model: str, validated_input: Mapping[str, Any]) -> None:
        if validated_input.get("resolution") == "1080p":
            raise InputUnsupported("Small ModelArk makes at most 720p")


class KeyedArk(ArkB):
    """ModelArk as if it took an idempotency key (the fake's test extension): shows the
    gateway's replay of an interrupted submit, as for providers that do take one."""

    name = "keyed-ark"
    display_name = "Keyed ModelArk"
    accepts_idempotency_key = True
    HEADER = "X-Test-Idempotency-Key"

    def submit_headers(self, job: ProviderJob) -> dict[str, str] | None:
        return {self.HEADER: job.idempotency_key}


class PollLogArk(ArkB):
    """Logs a line at each task's first poll: a line that a heartbeat of the gateway writes
    while the task goes on upstream."""

    name = "poll-log-ark"
    display_name = "Logging ModelArk"

    async def poll(self, task_id: str, log: RunLog) -> Running | Finished:
        polled: set[str] = self.__dict__.setdefault("_polled", set())
        if task_id not in polled:
            polled.add(task_id)
            log.log("poll line")
        return await super().poll(task_id, log)
