"""A run's statuses and the one table of moves between them.

    pending ──claim──> processing ──succeed──> succeeded
       ^                  │  │  └──cancel────> canceled (refunded)
       └──requeue (lost)──┘  └──fail───────> failed (refunded)
    pending ──cancel (owner, Cancel-After)──> canceled (refunded)

`TRANSITIONS` is that diagram as data: for each move, the statuses it leaves, the status
it reaches, the guards its update carries beyond the status, and its side effects (a
refund, a webhook; every move records a status event). `apply` builds the one guarded
`UPDATE runs ... WHERE id = :id AND status IN (...) AND <guards> RETURNING ...` from a
row of the table and carries out its side effects in the same transaction; zero rows
means another process moved the run first, and nothing else happens. `core.runs` and
`core.claims` name a row for every status change they make, so the table is the whole
list (tests/core/test_transition_table.py walks it, allowed and forbidden moves alike).

A pending run never times out and never fails: it waits for a worker, or is canceled.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, cast

from sqlalchemy import ClauseElement, ColumnElement, Connection, Table, bindparam, or_, update

from runbase.core import billing
from runbase.core.events import EventKind, record_event
from runbase.core.run_view import RUN_COLUMNS, Run, run_of
from runbase.core.webhooks import WebhookEvent
from runbase.storage.prepared import PreparedStatement
from runbase.storage.tables import RunRow

_RUNS = cast(Table, RunRow.__table__)


class RunStatus(StrEnum):
    PENDING = "pending"  # queued; no worker has it yet
    PROCESSING = "processing"  # a worker holds a lease on it and is generating
    SUCCEEDED = "succeeded"  # done; output holds the URLs
    FAILED = "failed"  # done; error says why, and the cost was refunded
    CANCELED = "canceled"  # done; its owner canceled it (or its Cancel-After passed); refunded

    def is_terminal(self) -> bool:
        return self in (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELED)


class Guard(StrEnum):
    """What a move checks beyond the run's status."""

    HOLDER = "holder"
    """The worker that moves it still holds it: one that lost its lease must not overwrite
    what the reaper decided."""
    LEASE_EXPIRED = "lease_expired"
    """Its lease is still expired: a late heartbeat wins over the reaper."""
    NOT_CANCELING = "not_canceling"
    """Its owner has not asked to cancel it: such a run must not run again."""
    BEFORE_DEADLINE = "before_deadline"
    """Its Cancel-After has not passed: the reaper cancels it instead."""


@dataclass(frozen=True)
class Transition:
    name: str
    sources: tuple[RunStatus, ...]
    target: RunStatus
    guards: tuple[Guard, ...] = ()
    refund: bool = False
    """Return the run's cost (exactly once: the ledger's unique key stops a second)."""
    webhook: WebhookEvent | None = None
    """The webhook event its status event queues (for runs whose filter wants it)."""

    def conditions(self, *, worker_id: str | None, now: int | None) -> list[ColumnElement[bool]]:
        """The WHERE of this move's update, beyond the run's id."""
        # Equalities rather than IN: an IN list is expanded per execution, which a prepared
        # statement cannot be.
        checks: list[ColumnElement[bool]] = [
            or_(*(_RUNS.c.status == status.value for status in self.sources))
        ]
        for guard in self.guards:
            if guard is Guard.HOLDER:
                if worker_id is None:
                    raise ValueError(f"{self.name} needs the worker that holds the run")
                checks.append(_RUNS.c.worker_id == worker_id)
            elif guard is Guard.NOT_CANCELING:
                checks.append(_RUNS.c.cancel_requested.is_(False))
            else:
                if now is None:
                    raise ValueError(f"{self.name} needs the time its guard is checked at")
                if guard is Guard.LEASE_EXPIRED:
                    checks.append(_RUNS.c.lease_expires_ms < now)
                else:
                    checks.append(or_(_RUNS.c.deadline_ms.is_(None), _RUNS.c.deadline_ms > now))
        return checks


_P, _Q = RunStatus.PENDING, RunStatus.PROCESSING
_SUCCEEDED, _FAILED, _CANCELED = RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELED
_START, _DONE = WebhookEvent.START, WebhookEvent.COMPLETED
_HOLDER, _EXPIRED = (Guard.HOLDER,), (Guard.LEASE_EXPIRED,)

CLAIM = Transition("claim", (_P,), _Q, (Guard.BEFORE_DEADLINE,), webhook=_START)
SUCCEED = Transition("succeed", (_Q,), _SUCCEEDED, _HOLDER, webhook=_DONE)
FAIL = Transition("fail", (_Q,), _FAILED, _HOLDER, refund=True, webhook=_DONE)
"""The engine or provider failed (or storing its output did)."""
TIME_OUT = Transition("time_out", (_Q,), _FAILED, (), refund=True, webhook=_DONE)
"""The reaper: processing longer than the maximum."""
FAIL_LOST = Transition("fail_lost", (_Q,), _FAILED, _EXPIRED, refund=True, webhook=_DONE)
"""The reaper: its worker was lost once too often (`worker_lost`)."""
CANCEL = Transition("cancel", (_Q,), _CANCELED, _HOLDER, refund=True, webhook=_DONE)
"""Its worker stopped it, as its owner (or its Cancel-After) asked."""
CANCEL_QUEUED = Transition("cancel_queued", (_P,), _CANCELED, (), refund=True, webhook=_DONE)
"""Its owner, or its Cancel-After, canceled it before any worker took it."""
CANCEL_LOST = Transition("cancel_lost", (_Q,), _CANCELED, _EXPIRED, refund=True, webhook=_DONE)
"""The reaper: its worker was lost after its owner asked to cancel it."""
HAND_BACK = Transition("hand_back", (_Q,), _P, (Guard.HOLDER, Guard.NOT_CANCELING))
"""A worker shutting down returns it to the queue."""
REQUEUE_LOST = Transition("requeue_lost", (_Q,), _P, _EXPIRED)
"""The reaper: its worker vanished and it has attempts left."""

TRANSITIONS: tuple[Transition, ...] = (
    CLAIM,
    SUCCEED,
    FAIL,
    TIME_OUT,
    FAIL_LOST,
    CANCEL,
    CANCEL_QUEUED,
    CANCEL_LOST,
    HAND_BACK,
    REQUEUE_LOST,
)


def apply(
    connection: Connection,
    transition: Transition,
    run_id: str,
    values: Mapping[str, Any] = {},
    *,
    worker_id: str | None = None,
    now: int | None = None,
) -> Run | None:
    """Make `transition` on one run, with its side effects: the run as the move left it,
    or None when its status or a guard said no (another process moved it first).

    A run's end is a hot write of a busy gateway, so the update for each set of columns is
    prepared once (`storage.prepared`); a value that is a SQL expression (a hand-back's
    `attempts - 1`) is built each time instead."""
    if any(isinstance(value, ClauseElement) for value in values.values()):
        statement = (
            update(_RUNS)
            .where(_RUNS.c.id == run_id, *transition.conditions(worker_id=worker_id, now=now))
            .values(status=transition.target.value, **values)
            .returning(*RUN_COLUMNS)
        )
        row = connection.execute(statement).first()
        run = None if row is None else run_of(row)
    else:
        params = {f"new_{name}": value for name, value in values.items()}
        params["move_run_id"] = run_id
        for guard in transition.guards:
            if guard is Guard.HOLDER:
                if worker_id is None:
                    raise ValueError(f"{transition.name} needs the worker that holds the run")
                params["move_worker_id"] = worker_id
            elif guard is not Guard.NOT_CANCELING:
                if now is None:
                    raise ValueError(f"{transition.name} needs the time its guard is checked at")
                params["move_now"] = now
        prepared = _prepared(transition, tuple(sorted(values)))
        run = cast("Run | None", prepared.execute(connection, params).first())
    if run is None:
        return None
    carry_out(connection, transition, run)
    return run


def _prepared(transition: Transition, columns: tuple[str, ...]) -> PreparedStatement:
    found = _PREPARED.get((transition.name, columns))
    if found is None:
        conditions = transition.conditions(
            worker_id=cast(str, bindparam("move_worker_id")), now=cast(int, bindparam("move_now"))
        )
        new = {name: bindparam(f"new_{name}", type_=_RUNS.c[name].type) for name in columns}
        found = _PREPARED[(transition.name, columns)] = PreparedStatement(
            update(_RUNS)
            .where(_RUNS.c.id == bindparam("move_run_id"), *conditions)
            .values({"status": transition.target.value, **new})
            .returning(*RUN_COLUMNS),
            row=Run,
        )
    return found


_PREPARED: dict[tuple[str, tuple[str, ...]], PreparedStatement] = {}


def carry_out(connection: Connection, transition: Transition, run: Run) -> None:
    """The side effects of a move just made: its refund, its status event and webhook."""
    if transition.refund:
        billing.refund_run(
            connection,
            run_id=run.id,
            account_id=run.account_id,
            key_id=run.key_id,
            cost=run.cost_micros,
            book=billing.Book.TEST if run.is_test else billing.Book.LIVE,
        )
    record_event(connection, run, EventKind.STATUS, webhook_event=transition.webhook)
