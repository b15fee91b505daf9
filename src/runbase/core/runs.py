"""Runs: every change of a run after its creation (`core.creation`).

Reads live in `core.listing`, claims and leases in `core.claims`, the reaper's policy
(what to do with lost and overdue runs) in `core.reaper`. Every status change is a row of
the table in `core.transitions` (which draws the diagram), made with `transitions.apply`:
one guarded `UPDATE ... WHERE id = :id AND status IN (...)`; zero rows means another
process moved the run first, and the change is dropped, never forced. The status change,
its ledger entry and its run event (`core.events`, which also queues webhooks) always
share one transaction. This module chooses the row and the columns a change sets.

A processing run is canceled cooperatively: the owner's cancel (or its Cancel-After
deadline) sets `cancel_requested`, the worker sees it with its next heartbeat, stops the
engine and finishes the run as canceled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, select, update

from runbase.core import transitions
from runbase.core.clock import now_ms
from runbase.core.events import EventKind, record_event
from runbase.core.listing import Owner, get_run, owned_by
from runbase.core.run_view import RUN_COLUMNS, Run
from runbase.core.transitions import RunStatus as RunStatus
from runbase.core.transitions import Transition
from runbase.core.webhooks import WebhookEvent
from runbase.errors import RunCanceled, RunFailure
from runbase.storage.prepared import PreparedStatement
from runbase.storage.tables import RunRow

MAX_LOG_LINES = 50


class Lease(StrEnum):
    """What a heartbeat learns about its run."""

    HELD = "held"  # still this worker's: carry on
    CANCELING = "canceling"  # still this worker's, but its owner wants it canceled
    LOST = "lost"  # taken away (reaped): stop and drop the result


_RUNS = cast(Table, RunRow.__table__)


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
        "output_keys": list(output_keys),
        "backend": backend,
        "progress": 1.0,
        "completed_ms": now_ms(),
        "lease_expires_ms": None,
    }
    if logs:
        values["logs"] = _appended_logs(connection, run_id, logs)
    moved = transitions.apply(connection, transitions.SUCCEED, run_id, values, worker_id=worker_id)
    return moved is not None


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
    """Fail a processing run and refund it, in this transaction.

    With `worker_id`, only if that worker still holds the run (`transitions.FAIL`); with
    `lease_expired_before`, only if the lease is still expired (`FAIL_LOST`); with
    neither, the reaper's timeout (`TIME_OUT`).
    """
    if worker_id is not None:
        transition = transitions.FAIL
    else:
        lost = lease_expired_before is not None
        transition = transitions.FAIL_LOST if lost else transitions.TIME_OUT
    return _end_with_refund(
        connection,
        run_id,
        transition,
        failure,
        worker_id=worker_id,
        backend=backend,
        logs=logs,
        now=lease_expired_before,
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
    """Cancel a run and refund it, in this transaction: a processing run by the worker
    that holds it (`worker_id`, `transitions.CANCEL`) or by the reaper once its lease
    expired (`lease_expired_before`, `CANCEL_LOST`); a pending one (`only_pending`,
    `CANCEL_QUEUED`), which must not take a run that a worker has just claimed.
    """
    if only_pending:
        transition = transitions.CANCEL_QUEUED
    elif worker_id is not None:
        transition = transitions.CANCEL
    elif lease_expired_before is not None:
        transition = transitions.CANCEL_LOST
    else:
        raise ValueError("say whose cancel it is: only_pending, worker_id or lease_expired_before")
    return _end_with_refund(
        connection,
        run_id,
        transition,
        RunCanceled(reason),
        worker_id=worker_id,
        backend=backend,
        logs=logs,
        now=lease_expired_before,
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
    flagged = connection.execute(_processing(run_id).values(cancel_requested=True)).rowcount
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
    transition: Transition,
    failure: RunFailure,
    *,
    worker_id: str | None,
    backend: str | None,
    logs: Sequence[str],
    now: int | None,
) -> bool:
    """A move to a refunded final status, with the error that says why."""
    values: dict[str, Any] = {
        "error_code": failure.code,
        "error_message": failure.message[:2000],
        "completed_ms": now_ms(),
        "lease_expires_ms": None,
    }
    if backend is not None:
        values["backend"] = backend
    if logs:
        values["logs"] = _appended_logs(connection, run_id, logs)
    ended = transitions.apply(connection, transition, run_id, values, worker_id=worker_id, now=now)
    return ended is not None


def hand_back_run(connection: Connection, run_id: str, *, worker_id: str) -> bool:
    """A worker shutting down returns its run to the queue, giving back the attempt.

    A run its owner asked to cancel is canceled instead: it must not run again.
    """
    values = {
        "worker_id": None,
        "lease_expires_ms": None,
        "attempts": _RUNS.c.attempts - 1,
        "progress": 0.0,
    }
    moved = transitions.apply(
        connection, transitions.HAND_BACK, run_id, values, worker_id=worker_id
    )
    if moved is None:
        reason = "the run was canceled; its worker was shutting down"
        return cancel_run(connection, run_id, reason, worker_id=worker_id)
    return True


def requeue_lost_run(connection: Connection, run_id: str, *, lease_expired_before: int) -> bool:
    """Put a run whose worker vanished back in the queue (its lease must still be expired)."""
    values = {"worker_id": None, "progress": 0.0, "lease_expires_ms": None}
    moved = transitions.apply(
        connection, transitions.REQUEUE_LOST, run_id, values, now=lease_expired_before
    )
    return moved is not None


def request_stop(connection: Connection, run_id: str) -> None:
    """Ask a processing run's worker to stop it (it then cancels the run)."""
    connection.execute(
        _processing(run_id, _RUNS.c.cancel_requested.is_(False)).values(cancel_requested=True)
    )


def _processing(run_id: str, *conditions: Any) -> Any:
    """An update of a processing run that keeps its status (not a transition)."""
    return update(_RUNS).where(
        _RUNS.c.id == run_id, _RUNS.c.status == RunStatus.PROCESSING.value, *conditions
    )


def _move(
    connection: Connection, run_id: str, values: dict[str, Any], *, worker_id: str
) -> Run | None:
    """A heartbeat: one guarded update of a processing run held by `worker_id` that keeps
    its status; the run after it, or None.

    A worker's heartbeats are hot writes of a busy gateway: the statement for each set of
    columns is prepared once (`storage.prepared`)."""
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
            .returning(*RUN_COLUMNS),
            row=Run,
        )
    params = {f"new_{name}": value for name, value in values.items()}
    params.update(move_run_id=run_id, move_worker_id=worker_id)
    return cast("Run | None", statement.execute(connection, params).first())


def _appended_logs(connection: Connection, run_id: str, lines: Sequence[str]) -> list[str]:
    current = _LOGS_OF.execute(connection, {"run_id": run_id}).first()
    return [*((current and current.logs) or []), *lines][-MAX_LOG_LINES:]


_MOVES: dict[tuple[str, ...], PreparedStatement] = {}
_LOGS_OF = PreparedStatement(select(_RUNS.c.logs).where(_RUNS.c.id == bindparam("run_id")))
