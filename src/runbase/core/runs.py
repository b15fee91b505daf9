"""Runs: statuses, creation (with its charge) and every status change.

Reads live in `core.listing`, claims and leases in `core.claims`, the reaper's policy
(what to do with lost and overdue runs) in `core.reaper`. Every other change of a run's
status is a function of this module.

    pending ──claim──> processing ──succeed──> succeeded
       ^                  │  │  └──cancel────> canceled (refunded)
       └──requeue (lost)──┘  └──fail───────> failed (refunded)
    pending ──cancel (owner, Cancel-After)──> canceled (refunded)

A processing run fails when its engine or provider fails, when the reaper finds it
processing longer than the maximum (`timeout`), or when its worker is lost once too often
(`worker_lost`); a lost run with attempts left is requeued. A pending run never times out
and never fails: it waits for a worker, or is canceled.

Each change is one guarded `UPDATE ... WHERE id = :id AND status IN (...)`; zero rows means
another process moved the run first, and the change is dropped, never forced. The status
change, its ledger entry and its run event (`core.events`, which also queues webhooks)
always share one transaction.

A processing run is canceled cooperatively: the owner's cancel (or its Cancel-After
deadline) sets `cancel_requested`, the worker sees it with its next heartbeat, stops the
engine and finishes the run as canceled.
"""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import (
    Connection,
    Row,
    Table,
    bindparam,
    func,
    insert,
    select,
    update,
)

from runbase.core import billing
from runbase.core.clock import new_id, now_ms
from runbase.core.events import EventKind, record_event
from runbase.core.keys import KeyRecord
from runbase.core.listing import Owner, get_run, owned_by
from runbase.core.webhooks import WebhookEvent
from runbase.errors import (
    RunCanceled,
    RunFailure,
    SpendLimitExceeded,
    UsageExceeded,
)
from runbase.storage.prepared import PreparedStatement
from runbase.storage.tables import ApiKeyRow, RunRow

DAY_MS = 24 * 3600 * 1000
MAX_LOG_LINES = 50


class RunStatus(StrEnum):
    PENDING = "pending"  # queued; no worker has it yet
    PROCESSING = "processing"  # a worker holds a lease on it and is generating
    SUCCEEDED = "succeeded"  # done; output holds the URLs
    FAILED = "failed"  # done; error says why, and the cost was refunded
    CANCELED = "canceled"  # done; its owner canceled it (or its Cancel-After passed); refunded

    def is_terminal(self) -> bool:
        return self in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELED)


class Lease(StrEnum):
    """What a heartbeat learns about its run."""

    HELD = "held"  # still this worker's: carry on
    CANCELING = "canceling"  # still this worker's, but its owner wants it canceled
    LOST = "lost"  # taken away (reaped): stop and drop the result


_KEYS = cast(Table, ApiKeyRow.__table__)
_RUNS = cast(Table, RunRow.__table__)
# Statements of the hot paths are built once: a statement is a pure value, and building it
# anew costs more than running it.
_SPEND_ON_KEY = PreparedStatement(
    update(_KEYS)
    .where(_KEYS.c.id == bindparam("key_id"))
    .values(spent_micros=_KEYS.c.spent_micros + bindparam("cost"))
    .returning(_KEYS.c.spent_micros, _KEYS.c.spend_limit_cents, _KEYS.c.daily_run_quota)
)
_COUNT_RECENT_RUNS = PreparedStatement(
    select(func.count())
    .select_from(_RUNS)
    .where(_RUNS.c.key_id == bindparam("key_id"), _RUNS.c.created_ms > bindparam("since"))
)
_INSERT_RUN = PreparedStatement(insert(_RUNS))
# A new run as create_run answers it: a plain tuple, since an ORM object costs more to
# build than the whole insert. Columns create_run does not set are None, as in the table.
_NEW_RUN = namedtuple(  # type: ignore[misc]
    "_NEW_RUN",
    [column.name for column in _RUNS.columns],
    defaults=[None] * len(_RUNS.columns),  # type: ignore[misc]
)
# What a change's RETURNING gives back: the whole row, for its event, refund and webhook
# (whose body shows the run as this change left it).
_CHANGED = tuple(_RUNS.c)
_ACTIVE = (RunStatus.PENDING.value, RunStatus.PROCESSING.value)


@dataclass(frozen=True)
class RunOptions:
    """What a create may ask beyond the input (all optional, all extensions)."""

    deadline_ms: int | None = None
    """Cancel-After, as an instant: past it the run is canceled and refunded."""
    webhook: str | None = None
    webhook_events: Sequence[str] | None = None
    public_base_url: str | None = None


def create_run(
    connection: Connection,
    *,
    key: KeyRecord,
    model: str,
    validated_input: Mapping[str, Any],
    cost: int,
    run_id: str | None = None,
    options: RunOptions = RunOptions(),
) -> Row[Any]:
    """Check quota, spend limit and balance, then insert the run and charge it; answers
    the new run's row (every column of `RunRow`, as a tuple with attributes).

    The first statement adds the cost to the key's spend and reads its limits back. It also
    serialises concurrent creates with the same key (a row lock on PostgreSQL, the write
    lock on SQLite), so the checks below cannot be raced. A refusal raises, and the
    transaction rolls everything back. A test key's run is charged to the test balance
    and never counts towards the key's spend.
    """
    now = now_ms()
    book = billing.Book.TEST if key.is_test else billing.Book.LIVE
    spent, limit_cents, quota = _SPEND_ON_KEY.execute(
        connection, {"key_id": key.id, "cost": 0 if key.is_test else cost}
    ).one()
    if quota is not None:
        recent = _COUNT_RECENT_RUNS.execute(
            connection, {"key_id": key.id, "since": now - DAY_MS}
        ).scalar_one()
        if recent >= quota:
            raise UsageExceeded(f"this API key may create {quota} runs per 24 hours")
    if limit_cents is not None and spent > limit_cents * billing.MICROS_PER_CENT:
        raise SpendLimitExceeded(
            f"this run costs {cost} micro-USD; the key has spent {spent - cost} "
            f"of its {limit_cents} cent limit"
        )
    values = dict(
        id=run_id or new_id("run"),
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
        is_test=key.is_test,
        cancel_requested=False,
        deadline_ms=options.deadline_ms,
        webhook=options.webhook,
        webhook_events=list(options.webhook_events) if options.webhook_events else None,
        public_base_url=options.public_base_url if options.webhook else None,
    )
    run: Any = _NEW_RUN(**values)
    billing.charge_run(connection, account_id=key.account_id, run_id=run.id, cost=cost, book=book)
    _INSERT_RUN.execute(connection, values)
    record_event(connection, run, EventKind.STATUS, seq=1)
    return cast(Row[Any], run)


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
) -> Lease:
    """Extend the lease and record progress (a progress event when the fraction is given).

    Also tells the worker whether the run's owner asked to cancel it.
    """
    values: dict[str, Any] = {"lease_expires_ms": now_ms() + lease_ms}
    if update_.fraction is not None:
        values["progress"] = max(0.0, min(1.0, update_.fraction))
    if update_.new_logs:
        values["logs"] = _appended_logs(connection, run_id, update_.new_logs)
    moved = _move(connection, run_id, values, worker_id=worker_id)
    if moved is None:
        return Lease.LOST
    if update_.fraction is not None:
        record_event(connection, moved, EventKind.PROGRESS, webhook_event=WebhookEvent.PROGRESS)
    return Lease.CANCELING if moved.cancel_requested else Lease.HELD


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
    moved = _move(connection, run_id, values, worker_id=worker_id)
    if moved is None:
        return False
    record_event(connection, moved, EventKind.STATUS, webhook_event=WebhookEvent.COMPLETED)
    return True


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
    return _end_with_refund(
        connection,
        run_id,
        RunStatus.FAILED,
        failure,
        worker_id=worker_id,
        backend=backend,
        logs=logs,
        lease_expired_before=lease_expired_before,
    )


def cancel_run(
    connection: Connection,
    run_id: str,
    reason: str,
    *,
    worker_id: str | None = None,
    backend: str | None = None,
    logs: Sequence[str] = (),
    only_pending: bool = False,
    lease_expired_before: int | None = None,
) -> bool:
    """Cancel a pending or processing run and refund it, in this transaction.

    The guards are those of `fail_run`; `only_pending` is the owner's cancel of a queued
    run, which must not take a run that a worker has just claimed.
    """
    return _end_with_refund(
        connection,
        run_id,
        RunStatus.CANCELED,
        RunCanceled(reason),
        worker_id=worker_id,
        backend=backend,
        logs=logs,
        lease_expired_before=lease_expired_before,
        statuses=(RunStatus.PENDING.value,) if only_pending else _ACTIVE,
    )


class CancelAnswer(StrEnum):
    CANCELED = "canceled"  # it was pending, and is now canceled and refunded
    REQUESTED = "requested"  # it is processing; its worker will stop it
    FINISHED = "finished"  # it had already finished; nothing changed


def request_cancel(connection: Connection, run_id: str, *, owner: Owner) -> CancelAnswer:
    """The owner's cancel: at once while pending, through the worker while processing."""
    run = get_run(connection, run_id, owner=owner)
    if run.status == RunStatus.PENDING and cancel_run(
        connection, run_id, "the run was canceled by its owner", only_pending=True
    ):
        return CancelAnswer.CANCELED
    flagged = connection.execute(
        _guarded(run_id, None, _RUNS.c.status == RunStatus.PROCESSING.value).values(
            cancel_requested=True
        )
    ).rowcount
    return CancelAnswer.REQUESTED if flagged else CancelAnswer.FINISHED


def mark_deleted(
    connection: Connection, run_id: str, *, owner: Owner, statuses: Sequence[RunStatus]
) -> bool:
    """Delete a finished run through a compatible API: one guarded update of `deleted_ms`.

    Not a status change: the run, its ledger entries and its files stay, and the Runbase
    API still shows it; the compatible APIs read it as missing (`listing.UNDELETED`).
    False when the run is not in `statuses` or is deleted already (a concurrent delete).
    """
    marked = connection.execute(
        update(_RUNS)
        .where(
            _RUNS.c.id == run_id,
            *owned_by(owner),
            _RUNS.c.status.in_([status.value for status in statuses]),
            _RUNS.c.deleted_ms.is_(None),
        )
        .values(deleted_ms=now_ms())
    ).rowcount
    return bool(marked)


def _end_with_refund(
    connection: Connection,
    run_id: str,
    status: RunStatus,
    failure: RunFailure,
    *,
    worker_id: str | None,
    backend: str | None,
    logs: Sequence[str],
    lease_expired_before: int | None,
    statuses: Sequence[str] = _ACTIVE,
) -> bool:
    """One guarded update to a refunded final status, its refund and its event."""
    values: dict[str, Any] = {
        "status": status.value,
        "error_code": failure.code,
        "error_message": failure.message[:2000],
        "completed_ms": now_ms(),
        "lease_expires_ms": None,
    }
    if backend is not None:
        values["backend"] = backend
    if logs:
        values["logs"] = _appended_logs(connection, run_id, logs)
    conditions: list[Any] = [_RUNS.c.status.in_(list(statuses))]
    if lease_expired_before is not None:
        conditions.append(_RUNS.c.lease_expires_ms < lease_expired_before)
    ended = connection.execute(
        _guarded(run_id, worker_id, *conditions).values(**values).returning(*_CHANGED)
    ).first()
    if ended is None:
        return False
    billing.refund_run(
        connection,
        run_id=run_id,
        account_id=ended.account_id,
        key_id=ended.key_id,
        cost=ended.cost_micros,
        book=billing.Book.TEST if ended.is_test else billing.Book.LIVE,
    )
    record_event(connection, ended, EventKind.STATUS, webhook_event=WebhookEvent.COMPLETED)
    return True


def hand_back_run(connection: Connection, run_id: str, *, worker_id: str) -> bool:
    """A worker shutting down returns its run to the queue, giving back the attempt.

    A run its owner asked to cancel is canceled instead: it must not run again.
    """
    values = {
        "status": RunStatus.PENDING.value,
        "worker_id": None,
        "lease_expires_ms": None,
        "attempts": _RUNS.c.attempts - 1,
        "progress": 0.0,
    }
    statement = _guarded(
        run_id,
        worker_id,
        _RUNS.c.status == RunStatus.PROCESSING.value,
        _RUNS.c.cancel_requested.is_(False),
    )
    moved = connection.execute(statement.values(**values).returning(*_CHANGED)).first()
    if moved is None:
        reason = "the run was canceled; its worker was shutting down"
        return cancel_run(connection, run_id, reason, worker_id=worker_id)
    record_event(connection, moved, EventKind.STATUS)
    return True


def requeue_lost_run(connection: Connection, run_id: str, *, lease_expired_before: int) -> bool:
    """Put a run whose worker vanished back in the queue (its lease must still be expired)."""
    moved = connection.execute(
        _guarded(
            run_id,
            None,
            _RUNS.c.status == RunStatus.PROCESSING.value,
            _RUNS.c.lease_expires_ms < lease_expired_before,
        )
        .values(status=RunStatus.PENDING.value, worker_id=None, progress=0.0, lease_expires_ms=None)
        .returning(*_CHANGED)
    ).first()
    if moved is None:
        return False
    record_event(connection, moved, EventKind.STATUS)
    return True


def request_stop(connection: Connection, run_id: str) -> None:
    """Ask a processing run's worker to stop it (it then cancels the run)."""
    connection.execute(
        _guarded(
            run_id,
            None,
            _RUNS.c.status == RunStatus.PROCESSING.value,
            _RUNS.c.cancel_requested.is_(False),
        ).values(cancel_requested=True)
    )


def _guarded(run_id: str, worker_id: str | None, *conditions: Any) -> Any:
    statement = update(_RUNS).where(_RUNS.c.id == run_id, *conditions)
    if worker_id is not None:
        statement = statement.where(_RUNS.c.worker_id == worker_id)
    return statement


def _move(
    connection: Connection, run_id: str, values: dict[str, Any], *, worker_id: str
) -> Row[Any] | None:
    """One guarded update of a processing run held by `worker_id`; the run after it, or None.

    A worker's heartbeats and its run's end are the hot writes of a busy gateway: the
    statement for each set of columns is prepared once (`storage.prepared`)."""
    columns = tuple(sorted(values))
    statement = _MOVES.get(columns)
    if statement is None:
        statement = _MOVES[columns] = PreparedStatement(
            update(_RUNS)
            .where(
                _RUNS.c.id == bindparam("move_run_id"),
                _RUNS.c.worker_id == bindparam("move_worker_id"),
                _RUNS.c.status == RunStatus.PROCESSING.value,
            )
            .values({name: bindparam(f"new_{name}", type_=_RUNS.c[name].type) for name in columns})
            .returning(*_CHANGED)
        )
    params = {f"new_{name}": value for name, value in values.items()}
    params.update(move_run_id=run_id, move_worker_id=worker_id)
    return cast("Row[Any] | None", statement.execute(connection, params).first())


def _appended_logs(connection: Connection, run_id: str, lines: Sequence[str]) -> list[str]:
    current = _LOGS_OF.execute(connection, {"run_id": run_id}).first()
    return [*((current and current.logs) or []), *lines][-MAX_LOG_LINES:]


_MOVES: dict[tuple[str, ...], PreparedStatement] = {}
_LOGS_OF = PreparedStatement(select(_RUNS.c.logs).where(_RUNS.c.id == bindparam("run_id")))
