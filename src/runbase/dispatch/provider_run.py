"""One run's life at providers: its route, its attempts, and how it ends.

    execute        finish what the run's attempts left (a crash between two writes),
                   resume an open attempt, then walk the route:
    _next_station  the first provider of the route not tried yet whose breaker lets it
                   through and that can honour the input (one with a free slot before
                   one without); the compute station when the providers are exhausted
    _attempt       begin (written) -> submit -> accept (written) -> poll until finished
                   -> result -> download -> contract check -> store -> succeed (written,
                   with the attempt's end, in one transaction)

Failover (README "Routing"): `NotAccepted` and `InputUnsupported` move to the next provider
at once; `TaskFailed` is retried once on the next provider (a second one ends the run);
`ContentRefused` and `SubmitUncertain` end the run. An attempt ends before the next one
begins, so a run is never in flight at two providers; a task that cannot be stopped when
its attempt runs out of time ends the run instead of moving on. Every ending that is not a
success is refunded (`runs.fail_run` / `runs.cancel_run`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from enum import Enum
from pathlib import Path
from typing import Any

from runbase.core import attempts, runs
from runbase.core.attempts import Attempt
from runbase.dispatch.executor import check_output, output_key, remove_scratch
from runbase.dispatch.held_runs import HeldRun, RunHost
from runbase.dispatch.provider_jobs import (
    JobBasis,
    failure_of,
    job_basis,
    label,
    make_job,
    record_accepted,
    record_success,
)
from runbase.errors import GenerationFailed, RunFailure, RunTimedOut, UpstreamError
from runbase.providers import (
    AttemptState,
    ContentRefused,
    Finished,
    InputUnsupported,
    NotAccepted,
    Provider,
    ProviderFailure,
    ProviderJob,
    SubmitUncertain,
    TaskFailed,
)
from runbase.storage.inputs import restore_images

logger = logging.getLogger(__name__)


class _Stop(Enum):
    """The run is finished, or no longer this gateway's to finish."""

    STOP = "stop"


STOP = _Stop.STOP
_ENDS_RUN = (ContentRefused, SubmitUncertain)
# Contract checks one after another, on a thread of their own: each gives the GIL up
# inside PyAV and waits to get it back, so that when a thousand tasks end together, checks
# spread over the default executor's threads cost several times their CPU
# (docs/benchmarks.md, "The gateway").
_CHECKS = ThreadPoolExecutor(max_workers=1, thread_name_prefix="runbase-check")


class ProviderRun:
    def __init__(self, gateway: RunHost, held: HeldRun, history: list[Attempt]) -> None:
        self.gw = gateway
        self.held = held
        self.run = held.run
        self.input: Mapping[str, Any] = held.run.input
        """The run's input as the client sent it (images stored at creation restored)."""
        self.history = history
        self.failures: list[tuple[str, ProviderFailure]] = []
        self.task_failures = sum(a.error_class == TaskFailed.error_class for a in history)

    async def execute(self) -> None:
        try:
            await self._execute()
        except Exception:
            logger.exception("run %s failed in the gateway", self.held.id)
            await self._end(GenerationFailed("runbase failed while handling the run"), None)
        finally:
            await asyncio.to_thread(remove_scratch, self._scratch)

    async def _execute(self) -> None:
        for attempt in self.history:
            if attempt.error_class is not None and attempt.error_message:
                self.failures.append((attempt.provider, failure_of(attempt)))
        final = next((a for a in self.history if a.error_class in _ENDS_RUN_CLASSES), None)
        if final is not None:  # it ended the run, but the run's end was not written
            await self._end(UpstreamError(final.error_message or "the provider failed"), None)
            return
        try:
            # Providers get each image as the client sent it (a data URI goes upstream
            # as one), not the link to our stored copy.
            self.input = await restore_images(self.gw.blobs, self.run.input)
            basis = await job_basis(self.run, self.input, self.gw.settings, self.held)
        except RunFailure as failure:
            await self._end(failure, None)
            return
        tried = {attempt.provider for attempt in self.history}
        last = self.history[-1] if self.history else None
        if last is not None and last.is_open:
            provider = self.gw.providers.get(last.provider)
            if provider is None:
                message = f"the run was at {last.provider}, which is no longer configured"
                await self._end(UpstreamError(message), last.provider, attempt=last)
                return
            await self._hold_slot(provider.name)
            if await self._step(provider, basis, last) is STOP:
                return
        while True:
            station = await self._next_station(tried)
            if station is STOP:
                return
            if station is None:
                await self._to_compute()
                return
            tried.add(station.name)
            if await self._step(station, basis, None) is STOP:
                return

    async def _step(
        self, provider: Provider, basis: JobBasis, resume: Attempt | None
    ) -> _Stop | None:
        """One attempt at `provider` (its slot held); None: go on along the route."""
        try:
            outcome = await self._attempt(provider, basis, resume)
        finally:
            self.gw.slots.give(provider.name)
            self.held.provider = self.held.task_id = None
        if outcome is STOP:
            return STOP
        self._record_failure(provider, outcome)
        if self._run_ends(outcome):
            await self._end(UpstreamError(self._summary()), provider.name)
            return STOP
        self.held.log(f"{label(provider)}: {outcome.message}; trying the next provider")
        return None

    def _run_ends(self, failure: ProviderFailure) -> bool:
        if isinstance(failure, _ENDS_RUN):
            return True
        if isinstance(failure, TaskFailed):
            self.task_failures += 1
            return self.task_failures > 1
        return False

    # ---- choosing where to go --------------------------------------------------------------

    async def _next_station(self, tried: set[str]) -> Provider | _Stop | None:
        """The next provider (its slot taken), None for the compute station, or STOP when
        the route is exhausted (the run has been ended) or the run is not ours now.

        Among the providers not tried yet that can take a run now, the first in route
        order with a free slot; when all of them are full, wait for a slot.
        """
        while True:
            if self._interrupted():
                await self._end_interrupted(None)
                return STOP
            candidates: list[Provider] = []
            compute_next = False
            for station in self.gw.stations():
                if station is None:
                    compute_next = self.gw.hand_to_compute is not None
                    break
                if station in tried:
                    continue
                provider = self.gw.providers[station]
                try:
                    provider.check_input(self.run.model, self.input)
                except InputUnsupported as refusal:
                    tried.add(station)
                    self._record_failure(provider, refusal)
                    self.held.log(f"{label(provider)} skipped: {refusal.message}")
                    continue
                if self.gw.usable(station):
                    candidates.append(provider)
                else:
                    self.held.log(f"{label(provider)} skipped: it is failing (cooling down)")
                    tried.add(station)
            for provider in candidates:
                if self.gw.slots.try_take(provider.name):
                    return provider
            if candidates:
                await self.gw.slots.changed(0.5)
                continue
            if compute_next:
                return None
            await self._end(UpstreamError(self._summary()), None)
            return STOP

    async def _hold_slot(self, name: str) -> None:
        """A resumed attempt goes back to its own provider: wait for a slot there."""
        while not self.gw.slots.try_take(name):
            await self.gw.slots.changed(0.5)

    async def _to_compute(self) -> None:
        assert self.gw.hand_to_compute is not None
        self.held.log("no provider took the run; it is made by the compute engine")
        if not await self.gw.hand_to_compute(self.held):
            await self._end_interrupted(None)

    # ---- one attempt -----------------------------------------------------------------------

    async def _attempt(
        self, provider: Provider, basis: JobBasis, resume: Attempt | None
    ) -> ProviderFailure | _Stop:
        name = provider.name
        self.gw.breakers[name].begin()
        attempt = resume
        if attempt is None:
            attempt = await self.gw.database.write(
                lambda connection: attempts.begin_attempt(
                    connection, self.held.id, provider=name, worker_id=self.gw.id
                )
            )
            if attempt is None:
                return STOP  # the run was taken from us: nothing was sent
        callback = self.gw.callback_url(name, self.held.id) if provider.supports_callbacks else None
        job = make_job(self.run, self.input, basis, attempt=attempt.number, callback_url=callback)
        self.held.provider = name
        task_id = attempt.task_id
        if attempt.state == AttemptState.SUBMITTING.value and resume is not None:
            if not provider.accepts_idempotency_key:
                failure = SubmitUncertain(
                    f"an earlier try was interrupted while submitting the run to "
                    f"{label(provider)}; it is not submitted again, so that it cannot be "
                    "paid for twice"
                )
                return await self._close(provider, job, attempt, failure, AttemptState.UNCERTAIN)
            self.held.log(f"{label(provider)}: submitting again with the same idempotency key")
        if task_id is None:
            started = time.monotonic()
            try:
                task_id = await provider.submit(job, self.held)
            except ProviderFailure as failure:
                return await self._close(provider, job, attempt, failure)
            except Exception:
                logger.exception("provider %s failed on the submit of run %s", name, job.run_id)
                broken = NotAccepted(f"{label(provider)} failed while taking the run")
                return await self._close(provider, job, attempt, broken)
            self.held.log(f"{label(provider)}: accepted as task {task_id}")
            logs = await self.gw.take_logs(self.held)  # the path so far, in the same transaction
            lease_ms = int(self.gw.settings.lease_seconds * 1000)
            await self.gw.database.write(
                lambda connection: record_accepted(
                    connection, self.gw.id, lease_ms, attempt, task_id, logs
                )
            )
            self.gw.observer.provider_submitted(name, time.monotonic() - started)
        else:
            self.held.log(f"{label(provider)}: resuming task {task_id}")
        self.held.task_id = task_id
        deadline = attempt.created_ms / 1000 + provider.timeout_s
        finished = await self._wait_for_task(provider, job, attempt, task_id, deadline)
        if finished is not None:
            return finished
        return await self._deliver(provider, job, attempt, task_id)

    async def _wait_for_task(
        self, provider: Provider, job: ProviderJob, attempt: Attempt, task_id: str, deadline: float
    ) -> ProviderFailure | _Stop | None:
        """Poll until the task is finished (None), failed, or the run must stop.

        Polls keep to one schedule from the submit: `poll_interval_s` after it, then each
        interval 1.5x the last, up to `max_poll_interval_s`. A slow answer does not push
        the later polls back: with a thousand runs in flight, answers that take 0.2 s would
        add seconds to every run."""
        interval = provider.poll_interval_s
        due = time.monotonic()
        reported_error = False
        if attempt.submitted_ms is None:  # just submitted: it is queued, no need to ask
            due += interval
            interval = min(interval * 1.5, provider.max_poll_interval_s)
            await self._sleep(due - time.monotonic())
        while True:
            if self._interrupted():
                if self.held.cancel_reason is not None:
                    await self._cancel_upstream(provider, job, attempt, task_id)
                await self._end_interrupted(provider.name)
                return STOP
            if time.time() >= deadline:
                return await self._time_out(provider, job, attempt, task_id)
            try:
                state = await provider.poll(task_id, self.held)
            except ProviderFailure as failure:
                return await self._close(provider, job, attempt, failure)
            except Exception:
                if not reported_error:  # a bug: say it once, keep polling until the deadline
                    logger.exception("provider %s failed polling task %s", provider.name, task_id)
                    reported_error = True
                state = None
            if isinstance(state, Finished):
                return None
            now = time.monotonic()
            due = max(due + interval, now)
            if state is not None:
                self.held.progress(state.fraction, state.stage)
                if state.retry_after_s is not None:
                    due = max(due, now + state.retry_after_s)
            await self._sleep(due - now)
            interval = min(interval * 1.5, provider.max_poll_interval_s)

    async def _sleep(self, seconds: float) -> None:
        """Wait between polls; a callback, a cancel or shutdown cuts it short."""
        await self.held.wake.sleep(seconds)

    async def _deliver(
        self, provider: Provider, job: ProviderJob, attempt: Attempt, task_id: str
    ) -> ProviderFailure | _Stop:
        """Download the finished task's video, check it, store it and succeed the run."""
        name = label(provider)
        output_path = self._scratch / "output.mp4"
        try:
            output = await provider.result(task_id, self.held)
            self.held.progress(0.9, "downloading")
            await self.gw.downloads.fetch(
                output.video_url,
                output_path,
                provider=name,
                allow_private_hosts=provider.allow_private_hosts,
                timeout_s=min(120.0, provider.timeout_s),
            )
            try:
                await asyncio.get_running_loop().run_in_executor(
                    _CHECKS, check_output, output_path, job
                )
            except GenerationFailed as bad:
                message = f"the video {name} made breaks the contract: {bad.message}"
                raise TaskFailed(message) from None
        except ProviderFailure as failure:
            return await self._close(provider, job, attempt, failure)
        key = output_key(job.run_id, output_path)
        await self.gw.blobs.put_file(key, output_path)
        cost = provider.cost_micros(job, output, AttemptState.SUCCEEDED)
        logs = await self.gw.take_logs(self.held)
        recorded = await self.gw.database.write(
            lambda connection: record_success(connection, self.gw.id, job, attempt, key, cost, logs)
        )
        self.gw.breakers[provider.name].succeeded()
        self.gw.observer.provider_completed(provider.name, time.time() - attempt.created_ms / 1000)
        if recorded:
            logger.info("run succeeded at %s", provider.name, extra={"run_id": job.run_id})
        return STOP

    async def _time_out(
        self, provider: Provider, job: ProviderJob, attempt: Attempt, task_id: str
    ) -> ProviderFailure | _Stop:
        message = f"{label(provider)} did not finish within {provider.timeout_s:g} s"
        if await provider.cancel(task_id):  # stopped upstream: another provider may try
            return await self._close(provider, job, attempt, TaskFailed(message))
        cost = provider.cost_micros(job, None, AttemptState.CANCELED)
        await self._write_end(attempt, AttemptState.FAILED, "timeout", message, cost)
        self.gw.breakers[provider.name].failed()
        self.gw.observer.provider_failed(provider.name, "timeout")
        await self._end(RunTimedOut(message), provider.name)
        return STOP

    async def _cancel_upstream(
        self, provider: Provider, job: ProviderJob, attempt: Attempt, task_id: str
    ) -> None:
        stopped = await provider.cancel(task_id)
        cost = 0 if stopped else provider.cost_micros(job, None, AttemptState.CANCELED)
        if not stopped:
            self.held.log(f"{label(provider)} could not stop the task; it is billed upstream")
        await self._write_end(attempt, AttemptState.CANCELED, "canceled", None, cost)
        self.gw.breakers[provider.name].neutral()

    async def _close(
        self,
        provider: Provider,
        job: ProviderJob,
        attempt: Attempt,
        failure: ProviderFailure,
        state: AttemptState = AttemptState.FAILED,
    ) -> ProviderFailure:
        """End the attempt as `failure` says, and count it for the breaker."""
        cost = provider.cost_micros(job, None, AttemptState.FAILED)
        await self._write_end(attempt, state, failure.error_class, failure.message, cost)
        breaker = self.gw.breakers[provider.name]
        if isinstance(failure, NotAccepted | TaskFailed):
            breaker.failed()
        else:
            breaker.neutral()
        self.gw.observer.provider_failed(provider.name, failure.error_class)
        logger.info(
            "run %s: %s %s: %s", job.run_id, provider.name, failure.error_class, failure.message
        )
        return failure

    async def _write_end(
        self,
        attempt: Attempt,
        state: AttemptState,
        error_class: str | None,
        message: str | None,
        cost: int,
    ) -> None:
        await self.gw.database.write(
            lambda connection: attempts.end_attempt(
                connection,
                attempt.id,
                state=state.value,
                error_class=error_class,
                error_message=message,
                cost_micros=cost,
            )
        )

    # ---- the run's end ---------------------------------------------------------------------

    def _interrupted(self) -> bool:
        held = self.held
        return held.is_lost or self.gw.stopping.is_set() or held.cancel_reason is not None

    async def _end_interrupted(self, backend: str | None) -> None:
        """Canceled: end the run so (refunded). Lost or shutting down: leave it be."""
        reason = self.held.cancel_reason
        if reason is None or self.held.is_lost:
            return
        logs = await self.gw.take_logs(self.held)
        await self.gw.database.write(
            lambda connection: runs.cancel_run(
                connection, self.held.id, reason, worker_id=self.gw.id, backend=backend, logs=logs
            )
        )

    async def _end(
        self, failure: RunFailure, backend: str | None, *, attempt: Attempt | None = None
    ) -> None:
        """Fail the run, refunded (only while this gateway still holds it)."""
        if attempt is not None:
            await self._write_end(
                attempt, AttemptState.FAILED, "not_configured", failure.message, 0
            )
        logs = await self.gw.take_logs(self.held)
        await self.gw.database.write(
            lambda connection: runs.fail_run(
                connection, self.held.id, failure, worker_id=self.gw.id, backend=backend, logs=logs
            )
        )

    def _record_failure(self, provider: Provider, failure: ProviderFailure) -> None:
        self.failures.append((label(provider), failure))

    def _summary(self) -> str:
        """The run's error: the one failure, or each provider's in turn."""
        if not self.failures:
            return "no provider of the route can take the run now"
        if len(self.failures) == 1:
            return self.failures[0][1].message
        return "no provider could make the video: " + "; ".join(
            f"{name}: {failure.message}" for name, failure in self.failures
        )

    # ---- the job ---------------------------------------------------------------------------

    @property
    def _scratch(self) -> Path:
        return self.gw.settings.data_dir / "scratch" / self.held.id


_ENDS_RUN_CLASSES = frozenset(
    {ContentRefused.error_class, SubmitUncertain.error_class, "not_configured"}
)


__all__ = ["ProviderRun"]
