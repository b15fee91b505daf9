"""Runs: statuses, creation (with its charge) and every status change.

    pending ──claim──> processing ──finish──> succeeded
       ^                  │  │
       └──requeue (lost)──┘  └──fail──────> failed (refunded)
    pending ──fail (deadline, timeout)──> failed (refunded)

Each change is one guarded `UPDATE ... WHERE id = :id AND status IN (...)`; zero rows means
another process moved the run first, and the change is dropped, never forced. The status
change and its ledger entry always share one transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import Connection, Row, Table, bindparam, func, insert, select, update

from runbase.core import billing
from runbase.core.clock import new_id, now_ms
from runbase.core.keys import KeyRecord
from runbase.errors import (
    RunFailure,
    RunNotFound,
    RunTimedOut,
    SpendLimitExceeded,
    UsageExceeded,
    WorkerLost,
)
from runbase.storage.tables import ApiKeyRow, RunRow

DAY_MS = 24 * 3600 * 1000
MAX_LOG_LINES = 50


class RunStatus(StrEnum):
    PENDING = "pending"  # queued; no worker has it yet
    PROCESSING = "processing"  # a worker holds a lease on it and is generating
    SUCCEEDED = "succeeded"  # done; output holds the URLs
    FAILED = "failed"  # done; error says why, and the cost was refunded

    def is_terminal(self) -> bool:
        return self in (RunStatus.SUCCEEDED, RunStatus.FAILED)


_KEYS = cast(Table, ApiKeyRow.__table__)
_RUNS = cast(Table, RunRow.__table__)
# Statements of the hot paths are built once: a statement is a pure value, and building it
# anew costs more than running it.
_SPEND_ON_KEY = (
    update(_KEYS)
    .where(_KEYS.c.id == bindparam("key_id"))
    .values(spent_micros=_KEYS.c.spent_micros + bindparam("cost"))
    .returning(_KEYS.c.spent_micros, _KEYS.c.spend_limit_cents, _KEYS.c.daily_run_quota)
)
_COUNT_RECENT_RUNS = (
    select(func.count())
    .select_from(_RUNS)
    .where(_RUNS.c.key_id == bindparam("key_id"), _RUNS.c.created_ms > bindparam("since"))
)
_INSERT_RUN = insert(_RUNS)
_SELECT_RUN = select(_RUNS).where(
    _RUNS.c.id == bindparam("run_id"), _RUNS.c.account_id == bindparam("account_id")
)


def create_run(
    connection: Connection,
    *,
    key: KeyRecord,
    model: str,
    validated_input: Mapping[str, Any],
    cost: int,
) -> RunRow:
    """Check quota, spend limit and balance, then insert the run and charge it.

    The first statement adds the cost to the key's spend and reads its limits back. It also
    serialises concurrent creates with the same key (a row lock on PostgreSQL, the write
    lock on SQLite), so the checks below cannot be raced. A refusal raises, and the
    transaction rolls everything back.
    """
    now = now_ms()
    spent, limit_cents, quota = connection.execute(
        _SPEND_ON_KEY, {"key_id": key.id, "cost": cost}
    ).one()
    if quota is not None:
        recent = connection.execute(
            _COUNT_RECENT_RUNS, {"key_id": key.id, "since": now - DAY_MS}
        ).scalar_one()
        if recent >= quota:
            raise UsageExceeded(f"this API key may create {quota} runs per 24 hours")
    if limit_cents is not None and spent > limit_cents * billing.MICROS_PER_CENT:
        raise SpendLimitExceeded(
            f"this run costs {cost} micro-USD; the key has spent {spent - cost} "
            f"of its {limit_cents} cent limit"
        )
    run = RunRow(
        id=new_id("run"),
        account_id=key.account_id,
        key_id=key.id,
        model=model,
        input=dict(validated_input),
        status=RunStatus.PENDING.value,
        cost_micros=cost,
        backend=None,
        output_keys=None,
        error_code=None,
        error_message=None,
        progress=0.0,
        logs=[],
        created_ms=now,
        started_ms=None,
        completed_ms=None,
        attempts=0,
        worker_id=None,
        lease_expires_ms=None,
    )
    billing.charge_run(connection, account_id=key.account_id, run_id=run.id, cost=cost)
    connection.execute(
        _INSERT_RUN, {column.name: getattr(run, column.name) for column in _RUNS.columns}
    )
    return run


def get_run(connection: Connection, run_id: str, *, account_id: str) -> Row[Any]:
    """A run of this account; another account's run is reported as missing, never forbidden.

    A Core read (the hot path of polling): the row has the same attributes as `RunRow`.
    """
    run = connection.execute(_SELECT_RUN, {"run_id": run_id, "account_id": account_id}).first()
    if run is None:
        raise RunNotFound(f"no run {run_id!r} exists for your account")
    return run


def claim_next_run(
    connection: Connection, *, worker_id: str, lease_ms: int, is_postgres: bool
) -> Row[Any] | None:
    """Move the oldest pending run to processing under this worker's lease."""
    now = now_ms()
    oldest = (
        select(_RUNS.c.id)
        .where(_RUNS.c.status == RunStatus.PENDING.value)
        .order_by(_RUNS.c.created_ms, _RUNS.c.id)
        .limit(1)
    )
    if is_postgres:
        oldest = oldest.with_for_update(skip_locked=True)
    run_id = connection.execute(oldest).scalar()
    if run_id is None:
        return None
    claimed = connection.execute(
        update(_RUNS)
        .where(_RUNS.c.id == run_id, _RUNS.c.status == RunStatus.PENDING.value)
        .values(
            status=RunStatus.PROCESSING.value,
            worker_id=worker_id,
            lease_expires_ms=now + lease_ms,
            attempts=_RUNS.c.attempts + 1,
            started_ms=func.coalesce(_RUNS.c.started_ms, now),
            progress=0.0,
        )
        .returning(*_RUNS.c)
    ).first()
    return claimed


@dataclass(frozen=True)
class ProgressUpdate:
    fraction: float | None = None
    new_logs: Sequence[str] = ()


def heartbeat_run(
    connection: Connection,
    run_id: str,
    *,
    worker_id: str,
    lease_ms: int,
    update_: ProgressUpdate = ProgressUpdate(),
) -> bool:
    """Extend the lease (and record progress); False if the run is no longer ours."""
    values: dict[str, Any] = {"lease_expires_ms": now_ms() + lease_ms}
    if update_.fraction is not None:
        values["progress"] = max(0.0, min(1.0, update_.fraction))
    if update_.new_logs:
        values["logs"] = _appended_logs(connection, run_id, update_.new_logs)
    return _move(connection, run_id, values, worker_id=worker_id)


def succeed_run(
    connection: Connection,
    run_id: str,
    *,
    worker_id: str,
    output_keys: Sequence[str],
    backend: str,
    logs: Sequence[str] = (),
) -> bool:
    values: dict[str, Any] = {
        "status": RunStatus.SUCCEEDED.value,
        "output_keys": list(output_keys),
        "backend": backend,
        "progress": 1.0,
        "completed_ms": now_ms(),
        "lease_expires_ms": None,
    }
    if logs:
        values["logs"] = _appended_logs(connection, run_id, logs)
    return _move(connection, run_id, values, worker_id=worker_id)


def fail_run(
    connection: Connection,
    run_id: str,
    failure: RunFailure,
    *,
    worker_id: str | None = None,
    backend: str | None = None,
    logs: Sequence[str] = (),
    lease_expired_before: int | None = None,
) -> bool:
    """Fail a pending or processing run and refund it, in this transaction.

    With `worker_id`, only if that worker still holds the run (a worker that lost its lease
    must not overwrite what the reaper decided); with `lease_expired_before`, only if the
    lease is still expired (a late heartbeat wins over the reaper).
    """
    values: dict[str, Any] = {
        "status": RunStatus.FAILED.value,
        "error_code": failure.code,
        "error_message": failure.message[:2000],
        "completed_ms": now_ms(),
        "lease_expires_ms": None,
    }
    if backend is not None:
        values["backend"] = backend
    if logs:
        values["logs"] = _appended_logs(connection, run_id, logs)
    conditions: list[Any] = [
        _RUNS.c.status.in_([RunStatus.PENDING.value, RunStatus.PROCESSING.value])
    ]
    if lease_expired_before is not None:
        conditions.append(_RUNS.c.lease_expires_ms < lease_expired_before)
    failed = connection.execute(
        _guarded(run_id, worker_id, *conditions)
        .values(**values)
        .returning(_RUNS.c.account_id, _RUNS.c.key_id, _RUNS.c.cost_micros)
    ).first()
    if failed is None:
        return False
    billing.refund_run(
        connection,
        run_id=run_id,
        account_id=failed.account_id,
        key_id=failed.key_id,
        cost=failed.cost_micros,
    )
    return True


def hand_back_run(connection: Connection, run_id: str, *, worker_id: str) -> bool:
    """A worker shutting down returns its run to the queue, giving back the attempt."""
    values = {
        "status": RunStatus.PENDING.value,
        "worker_id": None,
        "lease_expires_ms": None,
        "attempts": _RUNS.c.attempts - 1,
        "progress": 0.0,
    }
    return _move(connection, run_id, values, worker_id=worker_id)


@dataclass(frozen=True)
class ReapReport:
    requeued: tuple[str, ...]
    failed: tuple[str, ...]


def reap_runs(connection: Connection, *, max_attempts: int, max_processing_ms: int) -> ReapReport:
    """Recover runs whose worker vanished, and fail runs past the maximum processing time.

    A lost run is put back to pending while it has attempts left, then failed with
    `worker_lost`. A run whose first start is older than the maximum fails with `timeout`.
    """
    now = now_ms()
    requeued: list[str] = []
    failed: list[str] = []
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
        select(_RUNS.c.id, _RUNS.c.attempts).where(processing, _RUNS.c.lease_expires_ms < now)
    ).all()
    for run_id, attempts in lost:
        if attempts < max_attempts:
            requeue = {"status": RunStatus.PENDING.value, "worker_id": None, "progress": 0.0}
            requeue["lease_expires_ms"] = None
            if connection.execute(
                _guarded(run_id, None, processing, _RUNS.c.lease_expires_ms < now).values(**requeue)
            ).rowcount:
                requeued.append(run_id)
        elif fail_run(
            connection,
            run_id,
            WorkerLost(f"the worker stopped responding; tried {attempts} times"),
            lease_expired_before=now,
        ):
            failed.append(run_id)
    return ReapReport(tuple(requeued), tuple(failed))


def _guarded(run_id: str, worker_id: str | None, *conditions: Any) -> Any:
    statement = update(_RUNS).where(_RUNS.c.id == run_id, *conditions)
    if worker_id is not None:
        statement = statement.where(_RUNS.c.worker_id == worker_id)
    return statement


def _move(connection: Connection, run_id: str, values: dict[str, Any], *, worker_id: str) -> bool:
    """One guarded update of a processing run held by `worker_id`."""
    statement = _guarded(run_id, worker_id, _RUNS.c.status == RunStatus.PROCESSING.value)
    return bool(connection.execute(statement.values(**values)).rowcount)


def _appended_logs(connection: Connection, run_id: str, lines: Sequence[str]) -> list[str]:
    current = connection.execute(select(_RUNS.c.logs).where(_RUNS.c.id == run_id)).scalar()
    return [*(current or []), *lines][-MAX_LOG_LINES:]
