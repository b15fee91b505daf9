"""The reaper's policy: what becomes of runs whose worker vanished or whose time is up.

Runs every few seconds (`dispatch.reaping.reap_forever`); each decision is carried out by a
guarded transition of `core.runs`, so a late heartbeat or a concurrent finish always wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from sqlalchemy import Connection, Table, select

from runbase.core.clock import now_ms
from runbase.core.runs import (
    RunStatus,
    cancel_run,
    fail_run,
    request_stop,
    requeue_lost_run,
)
from runbase.errors import RunTimedOut, WorkerLost
from runbase.storage.tables import RunRow

_RUNS = cast(Table, RunRow.__table__)
_ACTIVE = (RunStatus.PENDING.value, RunStatus.PROCESSING.value)


@dataclass(frozen=True)
class ReapReport:
    requeued: tuple[str, ...]
    failed: tuple[str, ...]
    canceled: tuple[str, ...] = ()


def reap_runs(connection: Connection, *, max_attempts: int, max_processing_ms: int) -> ReapReport:
    """Recover runs whose worker vanished, fail runs past the maximum processing time, and
    enforce Cancel-After deadlines.

    A lost run is put back to pending while it has attempts left, then failed with
    `worker_lost`; one whose owner asked to cancel it is canceled instead. A run whose first
    start is older than the maximum fails with `timeout`. A pending run past its deadline
    is canceled; a processing one is asked to stop (its worker cancels it).
    """
    now = now_ms()
    requeued: list[str] = []
    failed: list[str] = []
    canceled = _enforce_deadlines(connection, now)
    processing = _RUNS.c.status == RunStatus.PROCESSING.value
    overdue = connection.execute(
        select(_RUNS.c.id).where(processing, _RUNS.c.started_ms < now - max_processing_ms)
    ).scalars()
    for run_id in list(overdue):
        timed_out = RunTimedOut(
            f"the run did not finish within {max_processing_ms // 1000} seconds"
        )
        if fail_run(connection, run_id, timed_out):
            failed.append(run_id)
    lost = connection.execute(
        select(_RUNS.c.id, _RUNS.c.attempts, _RUNS.c.cancel_requested).where(
            processing, _RUNS.c.lease_expires_ms < now
        )
    ).all()
    for run_id, attempts, cancel_requested in lost:
        if cancel_requested:
            reason = "the run was canceled; its worker stopped responding first"
            if cancel_run(connection, run_id, reason, lease_expired_before=now):
                canceled.append(run_id)
        elif attempts < max_attempts:
            if requeue_lost_run(connection, run_id, lease_expired_before=now):
                requeued.append(run_id)
        elif fail_run(
            connection,
            run_id,
            WorkerLost(f"the worker stopped responding; tried {attempts} times"),
            lease_expired_before=now,
        ):
            failed.append(run_id)
    return ReapReport(tuple(requeued), tuple(failed), tuple(canceled))


def _enforce_deadlines(connection: Connection, now: int) -> list[str]:
    """Cancel pending runs past their Cancel-After; ask processing ones to stop."""
    canceled = []
    overdue = connection.execute(
        select(_RUNS.c.id, _RUNS.c.status).where(
            _RUNS.c.deadline_ms < now, _RUNS.c.status.in_(list(_ACTIVE))
        )
    ).all()
    reason = "the run passed its Cancel-After deadline"
    for run_id, status in overdue:
        if status == RunStatus.PENDING:
            if cancel_run(connection, run_id, reason, only_pending=True):
                canceled.append(run_id)
        else:
            request_stop(connection, run_id)
    return canceled
