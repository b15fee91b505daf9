"""Every row of `core.transitions.TRANSITIONS`, tried from every status and against every
guard, on a real database (SQLite, or PostgreSQL under `make test-postgres`).

An allowed move changes the status and has exactly its side effects (a refund entry once,
a status event, a webhook queued for a run that asked for webhooks); a forbidden one (a
status the row does not leave, or a guard that does not hold) changes nothing at all.
"""

from __future__ import annotations

from typing import Any, NamedTuple, cast

import pytest
from sqlalchemy import Connection, Table, func, select, update

from runbase.core import billing, creation, keys, transitions
from runbase.core.clock import new_id, now_ms
from runbase.core.run_view import Run
from runbase.core.transitions import Guard, RunStatus, Transition
from runbase.storage.db import Database
from runbase.storage.tables import LedgerEntryRow, RunEventRow, RunRow, WebhookDeliveryRow

_RUNS = cast(Table, RunRow.__table__)
_LEDGER = cast(Table, LedgerEntryRow.__table__)
_EVENTS = cast(Table, RunEventRow.__table__)
_DELIVERIES = cast(Table, WebhookDeliveryRow.__table__)
BALANCE, COST, WORKER = 10_000, 1_000, "w1"
P, Q = RunStatus.PENDING, RunStatus.PROCESSING
S, F, C = RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELED

# The diagram of core/runs.py and core/transitions.py, written out: a change to the table
# must change this too.
EDGES = {
    ("claim", P, Q),
    ("succeed", Q, S),
    ("fail", Q, F),
    ("time_out", Q, F),
    ("fail_lost", Q, F),
    ("cancel", Q, C),
    ("cancel_queued", P, C),
    ("cancel_lost", Q, C),
    ("hand_back", Q, P),
    ("requeue_lost", Q, P),
}


class Trace(NamedTuple):
    """Everything a move may touch."""

    status: str
    refunds: int
    balance: int
    events: list[str]
    webhooks: list[str]


def trace(connection: Connection, run: Run) -> Trace:
    refunds = connection.execute(
        select(func.count()).where(_LEDGER.c.run_id == run.id, _LEDGER.c.kind == "refund")
    ).scalar_one()
    events = connection.execute(
        select(_EVENTS.c.status).where(_EVENTS.c.run_id == run.id).order_by(_EVENTS.c.seq)
    ).scalars()
    webhooks = connection.execute(
        select(_DELIVERIES.c.event)
        .where(_DELIVERIES.c.run_id == run.id)
        .order_by(_DELIVERIES.c.created_ms, _DELIVERIES.c.id)
    ).scalars()
    return Trace(
        connection.execute(select(_RUNS.c.status).where(_RUNS.c.id == run.id)).scalar_one(),
        refunds,
        billing.get_account(connection, run.account_id).balance_micros,
        list(events),
        list(webhooks),
    )


def run_in(connection: Connection, status: RunStatus, **columns: Any) -> Run:
    """A run that wants every webhook, put straight into `status`, held by WORKER under a
    live lease (unless `columns` say otherwise)."""
    account = billing.create_account(connection, name=new_id("a"), balance_micros=BALANCE)
    key = keys.find_key(connection, keys.create_key(connection, account_id=account.id)[1])
    assert key is not None
    options = creation.RunOptions(
        webhook="https://hooks.example.com/run",
        webhook_events=["start", "progress", "completed"],
        public_base_url="http://127.0.0.1/",
    )
    run = creation.create_run(
        connection, key=key, model="m", validated_input={}, cost=COST, options=options
    )
    values = {"worker_id": WORKER, "lease_expires_ms": now_ms() + 60_000, **columns}
    connection.execute(update(_RUNS).where(_RUNS.c.id == run.id).values(status=status, **values))
    return run


def move(connection: Connection, transition: Transition, run: Run) -> Run | None:
    return transitions.apply(
        connection,
        transition,
        run.id,
        worker_id=WORKER,
        now=now_ms() if transition.guards else None,
    )


def satisfying(transition: Transition) -> dict[str, Any]:
    """Columns under which every guard of `transition` holds."""
    if Guard.LEASE_EXPIRED in transition.guards:
        return {"lease_expires_ms": now_ms() - 1_000}
    return {}


def test_the_table_is_the_diagram() -> None:
    table = {(t.name, source, t.target) for t in transitions.TRANSITIONS for source in t.sources}
    assert table == EDGES
    # Only a move to a final failure or cancel refunds; every move to a final status sends
    # `completed`, a claim `start`, a move back to the queue nothing.
    for t in transitions.TRANSITIONS:
        assert t.refund == (t.target in (F, C))
        expected = "completed" if t.target.is_terminal() else "start" if t.target == Q else None
        assert t.webhook == expected


@pytest.mark.parametrize("transition", transitions.TRANSITIONS, ids=lambda t: t.name)
def test_every_move_from_every_status(database: Database, transition: Transition) -> None:
    for source in RunStatus:
        with database.transaction() as connection:
            run = run_in(connection, source, **satisfying(transition))
            before = trace(connection, run)
            moved = move(connection, transition, run)
            after = trace(connection, run)
        if source not in transition.sources:
            assert moved is None and after == before, (transition.name, source)
            continue
        assert moved is not None and moved.status == transition.target
        assert after.status == transition.target
        assert after.events == [*before.events, transition.target.value]
        webhook = [] if transition.webhook is None else [transition.webhook.value]
        assert after.webhooks == before.webhooks + webhook
        assert after.refunds == before.refunds + transition.refund
        assert after.balance == before.balance + (COST if transition.refund else 0)
        with database.transaction() as connection:  # the same move again: never a 2nd refund
            again = move(connection, transition, run)
            final = trace(connection, run)
        if transition.target not in transition.sources:
            assert again is None and final == after
        assert final.refunds <= 1 and final.balance <= BALANCE


GUARD_BROKEN: dict[Guard, dict[str, Any]] = {
    Guard.HOLDER: {"worker_id": "someone-else"},
    Guard.LEASE_EXPIRED: {"lease_expires_ms": now_ms() + 3_600_000},
    Guard.NOT_CANCELING: {"cancel_requested": True},
    Guard.BEFORE_DEADLINE: {"deadline_ms": 1},
}


@pytest.mark.parametrize(
    ("transition", "guard"),
    [(t, g) for t in transitions.TRANSITIONS for g in t.guards],
    ids=lambda value: getattr(value, "name", str(value)),
)
def test_a_broken_guard_changes_nothing(
    database: Database, transition: Transition, guard: Guard
) -> None:
    with database.transaction() as connection:
        columns = {**satisfying(transition), **GUARD_BROKEN[guard]}
        run = run_in(connection, transition.sources[0], **columns)
        before = trace(connection, run)
        assert move(connection, transition, run) is None
        assert trace(connection, run) == before
