"""Claims and leases: how workers take pending runs and keep them.

    claim_runs        move up to N of the oldest pending runs to processing under one
                      worker's lease (compute workers take one, the provider gateway as
                      many as it has free slots)
    renew_leases      one statement extends every lease a worker holds (the gateway's
                      heartbeat for all its runs at once), after a few that write the
                      progress and logs of those with news; answers which it still holds
                      and which of those their owners asked to cancel
    transfer_run      hand a held run to another worker of this process (the gateway
                      to a compute worker, when a run's route ends at a compute engine)

Each is a guarded update, as in `core.runs` (a claim is the table's `transitions.CLAIM`):
a run moves only from the status (and holder) the statement names, so concurrent claimers
never take the same run.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, Row, Table, bindparam, func, or_, select, update

from runbase.core import transitions
from runbase.core.clock import now_ms
from runbase.core.events import EventKind, record_events
from runbase.core.run_view import RUN_COLUMNS, Run, run_of
from runbase.core.runs import MAX_LOG_LINES, ProgressUpdate
from runbase.core.webhooks import WebhookEvent
from runbase.storage.prepared import PreparedStatement
from runbase.storage.tables import RunRow

_RUNS = cast(Table, RunRow.__table__)
_PENDING = "pending"
_PROCESSING = "processing"


def claim_runs(
    connection: Connection,
    *,
    worker_id: str,
    lease_ms: int,
    is_postgres: bool,
    limit: int = 1,
    is_test: bool | None = None,
) -> list[Run]:
    """Claim up to `limit` of the oldest pending runs (only test runs, only live runs, or
    either, as `is_test` says); each claim counts an attempt and records its event.

    A run past its Cancel-After deadline is left for the reaper to cancel.
    """
    now = now_ms()
    oldest = _oldest_pending(is_test, is_postgres)
    run_ids = [row[0] for row in oldest.execute(connection, {"now": now, "limit": limit}).rows]
    if not run_ids:
        return []
    claim = transitions.CLAIM  # many runs in one statement, so not `transitions.apply`
    claimed = [
        run_of(row)
        for row in connection.execute(
            update(_RUNS)
            .where(_RUNS.c.id.in_(run_ids), *claim.conditions(worker_id=worker_id, now=now))
            .values(
                status=claim.target.value,
                worker_id=worker_id,
                lease_expires_ms=now + lease_ms,
                attempts=_RUNS.c.attempts + 1,
                started_ms=func.coalesce(_RUNS.c.started_ms, now),
                progress=0.0,
            )
            .returning(*RUN_COLUMNS)
        )
    ]
    claimed.sort(key=lambda run: (run.created_ms, run.id))
    for run in claimed:
        transitions.carry_out(connection, claim, run)
    return claimed


def _oldest_pending(is_test: bool | None, is_postgres: bool) -> PreparedStatement:
    """The claim's first statement, prepared: every create and every finished run wakes
    the claimers, and most of their claims find nothing."""
    found = _OLDEST_PENDING.get((is_test, is_postgres))
    if found is None:
        oldest = (
            select(_RUNS.c.id)
            .where(
                _RUNS.c.status == _PENDING,
                or_(_RUNS.c.deadline_ms.is_(None), _RUNS.c.deadline_ms > bindparam("now")),
            )
            .order_by(_RUNS.c.created_ms, _RUNS.c.id)
            .limit(bindparam("limit"))
        )
        if is_test is not None:
            oldest = oldest.where(_RUNS.c.is_test.is_(is_test))
        if is_postgres:
            oldest = oldest.with_for_update(skip_locked=True)
        found = _OLDEST_PENDING[(is_test, is_postgres)] = PreparedStatement(oldest)
    return found


_OLDEST_PENDING: dict[tuple[bool | None, bool], PreparedStatement] = {}


def claim_next_run(
    connection: Connection, *, worker_id: str, lease_ms: int, is_postgres: bool
) -> Run | None:
    """Move the oldest pending run to processing under this worker's lease (or None)."""
    claimed = claim_runs(
        connection, worker_id=worker_id, lease_ms=lease_ms, is_postgres=is_postgres
    )
    return claimed[0] if claimed else None


@dataclass(frozen=True)
class Leases:
    """What one renewal found."""

    held: frozenset[str]
    """Runs this worker still holds (their leases now extended)."""
    canceling: frozenset[str]
    """Of those, the runs whose owner asked to cancel them (or whose deadline passed)."""


def renew_leases(
    connection: Connection,
    *,
    worker_id: str,
    lease_ms: int,
    updates: Mapping[str, ProgressUpdate] | None = None,
) -> Leases:
    """Extend the lease of every processing run this worker holds, in one statement; first
    write what `updates` brings (progress, with its event, and log lines) for the runs
    that have news, in a few statements however many there are."""
    if updates:
        _write_logs(connection, worker_id, updates)
        _write_progress(connection, worker_id, updates)
    rows = connection.execute(
        update(_RUNS)
        .where(_RUNS.c.worker_id == worker_id, _RUNS.c.status == _PROCESSING)
        .values(lease_expires_ms=now_ms() + lease_ms)
        .returning(_RUNS.c.id, _RUNS.c.cancel_requested)
    ).all()
    return Leases(
        held=frozenset(row.id for row in rows),
        canceling=frozenset(row.id for row in rows if row.cancel_requested),
    )


def _write_logs(
    connection: Connection, worker_id: str, updates: Mapping[str, ProgressUpdate]
) -> None:
    run_ids = [run_id for run_id, update_ in updates.items() if update_.new_logs]
    if not run_ids:
        return
    current = dict(
        connection.execute(select(_RUNS.c.id, _RUNS.c.logs).where(_RUNS.c.id.in_(run_ids))).all()
    )
    _SET_LOGS.execute_many(
        connection,
        [
            {
                "logs_run_id": run_id,
                "logs_worker_id": worker_id,
                "new_logs": [*(current.get(run_id) or []), *updates[run_id].new_logs][
                    -MAX_LOG_LINES:
                ],
            }
            for run_id in run_ids
        ],
    )


def _write_progress(
    connection: Connection, worker_id: str, updates: Mapping[str, ProgressUpdate]
) -> None:
    """One statement per distinct fraction (runs at one provider report a few), then the
    runs' progress events."""
    by_fraction: dict[float, list[str]] = {}
    for run_id, update_ in updates.items():
        if update_.fraction is not None:
            fraction = max(0.0, min(1.0, update_.fraction))
            by_fraction.setdefault(fraction, []).append(run_id)
    moved: list[Row[Any]] = []
    for fraction, run_ids in by_fraction.items():
        moved += connection.execute(
            update(_RUNS)
            .where(
                _RUNS.c.id.in_(run_ids),
                _RUNS.c.worker_id == worker_id,
                _RUNS.c.status == _PROCESSING,
            )
            .values(progress=fraction)
            .returning(*_EVENT_SUBJECT)
        ).all()
    record_events(connection, moved, EventKind.PROGRESS, webhook_event=WebhookEvent.PROGRESS)


_SET_LOGS = PreparedStatement(
    update(_RUNS)
    .where(
        _RUNS.c.id == bindparam("logs_run_id"),
        _RUNS.c.worker_id == bindparam("logs_worker_id"),
        _RUNS.c.status == _PROCESSING,
    )
    .values(logs=bindparam("new_logs", type_=_RUNS.c.logs.type))
)
_EVENT_SUBJECT = (
    _RUNS.c.id,
    _RUNS.c.account_id,
    _RUNS.c.status,
    _RUNS.c.progress,
    _RUNS.c.webhook,
    _RUNS.c.webhook_events,
)


def transfer_run(
    connection: Connection, run_id: str, *, from_worker: str, to_worker: str, lease_ms: int
) -> bool:
    """Give a processing run held by `from_worker` to `to_worker` (same attempt)."""
    moved = connection.execute(
        update(_RUNS)
        .where(
            _RUNS.c.id == run_id,
            _RUNS.c.worker_id == from_worker,
            _RUNS.c.status == _PROCESSING,
        )
        .values(worker_id=to_worker, lease_expires_ms=now_ms() + lease_ms)
    ).rowcount
    return bool(moved)


def held_runs(connection: Connection, run_ids: Sequence[str]) -> list[Run]:
    """These runs (a transferred run, as its new worker sees it)."""
    statement = select(*RUN_COLUMNS).where(_RUNS.c.id.in_(list(run_ids)))
    return [run_of(row) for row in connection.execute(statement)]
