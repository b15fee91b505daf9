"""Run events: each run's status and progress changes, numbered 1, 2, 3... per run.

`core.runs` records one in the same transaction as every change it makes, so the events
of a run are exactly its history: the SSE stream (`GET /api/v1/runs/{id}/events`) replays
them after a `Last-Event-ID`, and each one that the run's webhook filter asks for queues a
webhook delivery in that same transaction (so none is lost, and none is sent for a change
that rolled back).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Any, Protocol, cast

from sqlalchemy import Connection, Row, Table, bindparam, func, insert, select

from runbase.core import webhooks
from runbase.core.clock import now_ms
from runbase.core.run_view import RUN_COLUMNS, Run, run_of
from runbase.storage.prepared import PreparedStatement
from runbase.storage.tables import RunEventRow, RunRow

_EVENTS = cast(Table, RunEventRow.__table__)
MAX_SEQ = 2**31 - 1  # run_events.seq is a 32-bit integer
_RUNS = cast(Table, RunRow.__table__)
_RUN_COLUMNS = tuple(column.name for column in RUN_COLUMNS)  # a snapshot has no queue_position
_INSERT_EVENT = PreparedStatement(insert(_EVENTS))
_NEXT_SEQ = PreparedStatement(
    select(func.coalesce(func.max(_EVENTS.c.seq), 0) + 1).where(
        _EVENTS.c.run_id == bindparam("run_id")
    )
)
_EVENTS_AFTER = (
    select(_EVENTS)
    .where(_EVENTS.c.run_id == bindparam("run_id"), _EVENTS.c.seq > bindparam("after"))
    .order_by(_EVENTS.c.seq)
)


class EventKind(StrEnum):
    STATUS = "status"  # the run's status changed (the first event is always `pending`)
    PROGRESS = "progress"  # the engine reported progress while processing


class EventSubject(Protocol):
    """What `record_events` needs to know about each run: the few columns a gateway's
    batched progress update returns for hundreds of runs (a `Run` has them too)."""

    @property
    def id(self) -> str: ...
    @property
    def account_id(self) -> str: ...
    @property
    def status(self) -> str: ...
    @property
    def progress(self) -> float: ...
    @property
    def webhook(self) -> str | None: ...
    @property
    def webhook_events(self) -> Sequence[str] | None: ...


def record_event(
    connection: Connection,
    run: Run,
    kind: EventKind,
    *,
    webhook_event: webhooks.WebhookEvent | None = None,
    seq: int | None = None,
) -> None:
    """Append the run's next event (its state as `run` shows it) and queue its webhook.

    `webhook_event` names the event for webhook filters (`start`, `progress`,
    `completed`); None sends none. `seq` may be given when it is known (1 for a new run),
    saving a query.
    """
    if seq is None:
        seq = _NEXT_SEQ.execute(connection, {"run_id": run.id}).scalar_one()
    _INSERT_EVENT.execute(
        connection,
        {
            "run_id": run.id,
            "seq": seq,
            "kind": kind.value,
            "status": run.status,
            "progress": run.progress,
            "created_ms": now_ms(),
        },
    )
    if _wants_webhook(run, webhook_event):
        _queue_webhook(connection, run, webhook_event, run)


def record_events(
    connection: Connection,
    runs: Sequence[EventSubject],
    kind: EventKind,
    *,
    webhook_event: webhooks.WebhookEvent | None = None,
) -> None:
    """`record_event` for many runs (each once) in three statements whatever their number:
    a heartbeat of the gateway writes the progress of hundreds of runs at once."""
    if not runs:
        return
    ids = [run.id for run in runs]
    last = dict(
        connection.execute(
            select(_EVENTS.c.run_id, func.max(_EVENTS.c.seq))
            .where(_EVENTS.c.run_id.in_(ids))
            .group_by(_EVENTS.c.run_id)
        ).all()
    )
    now = now_ms()
    rows = [
        {
            "run_id": run.id,
            "seq": last.get(run.id, 0) + 1,
            "kind": kind.value,
            "status": run.status,
            "progress": run.progress,
            "created_ms": now,
        }
        for run in runs
    ]
    _INSERT_EVENT.execute_many(connection, rows)
    for run in runs:
        if _wants_webhook(run, webhook_event):
            # The message shows the whole run: read it (`runs` hold a few columns).
            whole = connection.execute(select(*RUN_COLUMNS).where(_RUNS.c.id == run.id)).one()
            _queue_webhook(connection, run, webhook_event, run_of(whole))


def _wants_webhook(run: EventSubject, event: webhooks.WebhookEvent | None) -> bool:
    return (
        bool(run.webhook)
        and event is not None
        and event in (run.webhook_events or webhooks.DEFAULT_EVENTS)
    )


def _queue_webhook(
    connection: Connection,
    run: EventSubject,
    event: webhooks.WebhookEvent | None,
    whole: Run,
) -> None:
    assert event is not None and run.webhook
    webhooks.queue_delivery(
        connection,
        account_id=run.account_id,
        run_id=run.id,
        url=run.webhook,
        event=event,
        snapshot=_snapshot(whole),
    )


def _snapshot(run: Run) -> dict[str, Any]:
    """The run's columns as a JSON-ready dict (`run_view.run_from_snapshot` reads it back)."""
    return dict(zip(_RUN_COLUMNS, run, strict=False))


def events_after(connection: Connection, run_id: str, after: int) -> list[Row[Any]]:
    """The run's events numbered above `after`, in order. Any `after` a client may send
    (up to 2**63 - 1) is taken: past the column's 32 bits it is past every event, and
    PostgreSQL would refuse to compare it."""
    after = min(after, MAX_SEQ)
    return list(connection.execute(_EVENTS_AFTER, {"run_id": run_id, "after": after}).all())
