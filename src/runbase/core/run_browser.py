"""The operator's view of runs: every account's, filtered, newest first, in pages.

The same run rows and cursors as the runs API's list (`core.listing`), with the account
and key each run belongs to, and the filters an operator needs besides status, model and
time: account, key and backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, Table, and_, or_

from runbase.core import audit, listing, runs
from runbase.core.audit import Actor
from runbase.core.listing import Owner
from runbase.core.run_view import Run, run_of
from runbase.errors import RunNotFound
from runbase.storage.tables import RunRow

_RUNS = cast(Table, RunRow.__table__)
_SELECT = listing.SELECT_RUNS


@dataclass(frozen=True)
class RunQuery:
    account_id: str | None = None
    key_id: str | None = None
    status: str | None = None
    model: str | None = None
    backend: str | None = None
    created_after_ms: int | None = None
    created_before_ms: int | None = None


def list_runs(
    connection: Connection, query: RunQuery, *, limit: int, after: tuple[int, str] | None = None
) -> tuple[list[Run], str | None]:
    """One page, newest first, and the cursor of the next (None at the end)."""
    runs_ = _RUNS.c
    conditions: list[Any] = []
    for column, value in (
        (runs_.account_id, query.account_id),
        (runs_.key_id, query.key_id),
        (runs_.status, query.status),
        (runs_.model, query.model),
        (runs_.backend, query.backend),
    ):
        if value is not None:
            conditions.append(column == value)
    if query.created_after_ms is not None:
        conditions.append(runs_.created_ms > query.created_after_ms)
    if query.created_before_ms is not None:
        conditions.append(runs_.created_ms < query.created_before_ms)
    if after is not None:
        created, run_id = after
        conditions.append(
            or_(runs_.created_ms < created, and_(runs_.created_ms == created, runs_.id < run_id))
        )
    statement = (
        _SELECT.where(*conditions)
        .order_by(runs_.created_ms.desc(), runs_.id.desc())
        .limit(limit + 1)
    )
    rows = [run_of(row) for row in connection.execute(statement)]
    if len(rows) > limit:
        return rows[:limit], listing.encode_cursor(rows[limit - 1])
    return rows, None


def get_run(connection: Connection, run_id: str) -> Run:
    """A run of any account."""
    run = connection.execute(_SELECT.where(_RUNS.c.id == run_id)).first()
    if run is None:
        raise RunNotFound(f"no run {run_id!r}")
    return run_of(run)


def cancel_run(connection: Connection, actor: Actor, run_id: str) -> runs.CancelAnswer:
    """The owner's cancel, made by an operator (refunded like any cancel), and audited."""
    run = get_run(connection, run_id)
    answer = runs.request_cancel(connection, run_id, owner=owner_of(run))
    audit.record(connection, actor, "run.cancel", run_id, {"outcome": answer.value})
    return answer


def owner_of(run: Run) -> Owner:
    """The run's own owner: an operator acts on a run as its account, in its mode."""
    return Owner(run.account_id, bool(run.is_test))
