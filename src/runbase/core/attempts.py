"""Upstream attempts: each try of a run at a provider, as rows of `upstream_attempts`.

Written before and after every submit, so that whoever holds the run next (this worker
after a restart, another machine) knows exactly what is upstream:

    begin_attempt      before the submit: `submitting` (nothing known yet)
    accept_attempt     the provider answered with a task id: `accepted`
    end_attempt        succeeded, failed (with its error class), canceled or uncertain,
                       with what the attempt cost upstream

An attempt is only written by the worker that holds the run's lease (`worker_id`), in the
same transaction as the check, so a worker that lost its run cannot record anything for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, func, insert, or_, select, update

from runbase.core.clock import now_ms
from runbase.storage.prepared import PreparedStatement
from runbase.storage.tables import RunRow, UpstreamAttemptRow

_ATTEMPTS = cast(Table, UpstreamAttemptRow.__table__)
_RUNS = cast(Table, RunRow.__table__)
_OPEN = ("submitting", "accepted")
# A busy gateway writes an attempt's rows for every run it carries: the statements are
# prepared once (`storage.prepared`).
_IS_OPEN = or_(*(_ATTEMPTS.c.state == state for state in _OPEN))
_HOLDS = PreparedStatement(
    select(_RUNS.c.id).where(
        _RUNS.c.id == bindparam("run_id"),
        _RUNS.c.worker_id == bindparam("worker_id"),
        _RUNS.c.status == "processing",
    )
)
_LAST_NUMBER = PreparedStatement(
    select(func.coalesce(func.max(_ATTEMPTS.c.number), 0)).where(
        _ATTEMPTS.c.run_id == bindparam("run_id")
    )
)
_INSERT = PreparedStatement(insert(_ATTEMPTS).returning(*_ATTEMPTS.c))
_ACCEPT = PreparedStatement(
    update(_ATTEMPTS)
    .where(_ATTEMPTS.c.id == bindparam("attempt_id"), _ATTEMPTS.c.state == "submitting")
    .values(
        state="accepted",
        task_id=bindparam("task", type_=_ATTEMPTS.c.task_id.type),
        submitted_ms=bindparam("now", type_=_ATTEMPTS.c.submitted_ms.type),
    )
)
_END = PreparedStatement(
    update(_ATTEMPTS)
    .where(_ATTEMPTS.c.id == bindparam("attempt_id"), _IS_OPEN)
    .values(
        state=bindparam("end_state", type_=_ATTEMPTS.c.state.type),
        error_class=bindparam("end_class", type_=_ATTEMPTS.c.error_class.type),
        error_message=bindparam("end_message", type_=_ATTEMPTS.c.error_message.type),
        cost_micros=bindparam("end_cost", type_=_ATTEMPTS.c.cost_micros.type),
        finished_ms=bindparam("now", type_=_ATTEMPTS.c.finished_ms.type),
    )
)


@dataclass(frozen=True)
class Attempt:
    """One row of `upstream_attempts`."""

    id: int
    run_id: str
    number: int
    provider: str
    state: str
    task_id: str | None
    error_class: str | None
    error_message: str | None
    cost_micros: int | None
    created_ms: int
    submitted_ms: int | None
    finished_ms: int | None

    @property
    def is_open(self) -> bool:
        """Submitting or accepted: the task may be (or is) upstream."""
        return self.state in _OPEN


def attempts_of(connection: Connection, run_id: str) -> list[Attempt]:
    """The run's attempts, first first."""
    rows = connection.execute(
        select(_ATTEMPTS).where(_ATTEMPTS.c.run_id == run_id).order_by(_ATTEMPTS.c.number)
    ).all()
    return [_attempt(row) for row in rows]


def attempts_of_runs(connection: Connection, run_ids: Sequence[str]) -> dict[str, list[Attempt]]:
    """The attempts of many runs at once (a batch of claims), by run id."""
    found: dict[str, list[Attempt]] = {run_id: [] for run_id in run_ids}
    if not run_ids:
        return found
    rows = connection.execute(
        select(_ATTEMPTS)
        .where(_ATTEMPTS.c.run_id.in_(list(run_ids)))
        .order_by(_ATTEMPTS.c.run_id, _ATTEMPTS.c.number)
    ).all()
    for row in rows:
        found[row.run_id].append(_attempt(row))
    return found


def begin_attempt(
    connection: Connection, run_id: str, *, provider: str, worker_id: str
) -> Attempt | None:
    """Record that this worker is about to submit the run to `provider`; None when the
    worker no longer holds the run (then nothing may be submitted)."""
    if _HOLDS.execute(connection, {"run_id": run_id, "worker_id": worker_id}).first() is None:
        return None
    number = _LAST_NUMBER.execute(connection, {"run_id": run_id}).scalar_one()
    values: dict[str, Any] = {
        "run_id": run_id,
        "number": int(number) + 1,
        "provider": provider,
        "state": "submitting",
        "created_ms": now_ms(),
    }
    return _attempt(_INSERT.execute(connection, values).one())


def accept_attempt(connection: Connection, attempt_id: int, *, task_id: str) -> bool:
    """Record the provider's task id. Written even when the worker has lost the run since:
    the task exists upstream, and whoever holds the run now must find it."""
    params = {"attempt_id": attempt_id, "task": task_id, "now": now_ms()}
    return bool(_ACCEPT.execute(connection, params).rowcount)


def end_attempt(
    connection: Connection,
    attempt_id: int,
    *,
    state: str,
    error_class: str | None = None,
    error_message: str | None = None,
    cost_micros: int | None = None,
) -> bool:
    """Close an open attempt; False when it was closed already (nothing is overwritten)."""
    params = {
        "attempt_id": attempt_id,
        "end_state": state,
        "end_class": error_class,
        "end_message": None if error_message is None else error_message[:2000],
        "end_cost": cost_micros,
        "now": now_ms(),
    }
    return bool(_END.execute(connection, params).rowcount)


def find_run_of_task(connection: Connection, provider: str, task_id: str) -> str | None:
    """The run whose open attempt at `provider` has this task id (callbacks), or None."""
    return connection.execute(
        select(_ATTEMPTS.c.run_id).where(
            _ATTEMPTS.c.provider == provider,
            _ATTEMPTS.c.task_id == task_id,
            _ATTEMPTS.c.state.in_(_OPEN),
        )
    ).scalar()


def _attempt(row: Any) -> Attempt:
    return Attempt(
        id=row.id,
        run_id=row.run_id,
        number=row.number,
        provider=row.provider,
        state=row.state,
        task_id=row.task_id,
        error_class=row.error_class,
        error_message=row.error_message,
        cost_micros=row.cost_micros,
        created_ms=row.created_ms,
        submitted_ms=row.submitted_ms,
        finished_ms=row.finished_ms,
    )
