"""The gateway's writes for many runs at once, on a real database: one heartbeat renews
every lease and writes the progress, events and logs of the runs with news; the attempt
rows of a run (written before and after each submit).

SQLite, or PostgreSQL under `make test-postgres`.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from runbase.core import attempts, billing, claims, creation, keys, runs
from runbase.storage.db import Database
from runbase.storage.tables import RunEventRow, RunRow, WebhookDeliveryRow

INPUT = {"prompt": "x", "aspect_ratio": "16:9", "resolution": "480p", "duration": "4"}
LEASE_MS = 60_000


def new_runs(db: Database, count: int, options: creation.RunOptions | None = None) -> list[str]:
    with db.transaction() as connection:
        name = f"account {len(connection.execute(select(RunRow.id)).all())}"
        account = billing.create_account(connection, name=name, balance_micros=10**9)
        key = keys.find_key(connection, keys.create_key(connection, account_id=account.id)[1])
        assert key is not None
        return [
            creation.create_run(
                connection,
                key=key,
                model="m",
                validated_input=INPUT,
                cost=1,
                options=options or creation.RunOptions(),
            ).id
            for _ in range(count)
        ]


def claim_all(db: Database, worker: str) -> list[str]:
    with db.transaction() as connection:
        claimed = claims.claim_runs(
            connection,
            worker_id=worker,
            lease_ms=LEASE_MS,
            is_postgres=not db.is_sqlite,
            limit=1000,
        )
    return [run.id for run in claimed]


def row(db: Database, run_id: str) -> Any:
    with db.connect() as connection:
        return connection.execute(select(RunRow.__table__).where(RunRow.id == run_id)).one()


def events(db: Database, run_id: str) -> list[tuple[int, str, str, float]]:
    table = RunEventRow.__table__
    with db.connect() as connection:
        rows = connection.execute(
            select(table.c.seq, table.c.kind, table.c.status, table.c.progress)
            .where(table.c.run_id == run_id)
            .order_by(table.c.seq)
        ).all()
    return [tuple(r) for r in rows]  # type: ignore[misc]


def heartbeat(db: Database, worker: str, updates: dict[str, runs.ProgressUpdate]) -> Any:
    with db.transaction() as connection:
        return claims.renew_leases(connection, worker_id=worker, lease_ms=LEASE_MS, updates=updates)


def test_one_heartbeat_writes_the_news_of_many_runs(database: Database) -> None:
    ids = new_runs(database, 6)
    assert claim_all(database, "gw") == ids
    first, second, third, fourth, fifth, sixth = ids
    leases = heartbeat(
        database,
        "gw",
        {
            first: runs.ProgressUpdate(0.5, ("seed 7", "accepted as task t1")),
            second: runs.ProgressUpdate(0.5),
            third: runs.ProgressUpdate(0.25),
            fourth: runs.ProgressUpdate(None, ("only a log",)),
            fifth: runs.ProgressUpdate(1.7),  # clamped, as heartbeat_run does
        },
    )
    assert leases.held == frozenset(ids) and not leases.canceling
    expected = {first: 0.5, second: 0.5, third: 0.25, fourth: 0.0, fifth: 1.0, sixth: 0.0}
    for run_id, fraction in expected.items():
        assert row(database, run_id).progress == fraction
    assert row(database, first).logs == ["seed 7", "accepted as task t1"]
    assert row(database, fourth).logs == ["only a log"]
    assert row(database, sixth).logs == []
    # Each progress is one event, numbered after the run's earlier ones; a log is not one.
    assert events(database, first) == [
        (1, "status", "pending", 0.0),
        (2, "status", "processing", 0.0),
        (3, "progress", "processing", 0.5),
    ]
    assert events(database, fifth)[-1] == (3, "progress", "processing", 1.0)
    assert len(events(database, fourth)) == 2 and len(events(database, sixth)) == 2

    heartbeat(database, "gw", {first: runs.ProgressUpdate(0.75, ("done polling",))})
    assert events(database, first)[-1] == (4, "progress", "processing", 0.75)
    assert row(database, first).logs == ["seed 7", "accepted as task t1", "done polling"]


def test_logs_keep_the_last_lines(database: Database) -> None:
    (run_id,) = new_runs(database, 1)
    claim_all(database, "gw")
    lines = tuple(f"line {i}" for i in range(runs.MAX_LOG_LINES + 5))
    heartbeat(database, "gw", {run_id: runs.ProgressUpdate(None, lines)})
    assert row(database, run_id).logs == list(lines[-runs.MAX_LOG_LINES :])


def test_a_heartbeat_writes_nothing_for_runs_it_no_longer_holds(database: Database) -> None:
    mine, taken, canceled = new_runs(database, 3)
    claim_all(database, "gw")
    with database.transaction() as connection:
        # Reaped and claimed by another worker meanwhile, and one its owner asked to stop.
        connection.execute(
            RunRow.__table__.update().where(RunRow.id == taken).values(worker_id="other")
        )
        runs.request_stop(connection, canceled)
    before = events(database, taken)
    leases = heartbeat(
        database,
        "gw",
        {run_id: runs.ProgressUpdate(0.5, ("news",)) for run_id in (mine, taken, canceled)},
    )
    assert leases.held == frozenset({mine, canceled})
    assert leases.canceling == frozenset({canceled})
    assert row(database, taken).progress == 0.0 and row(database, taken).logs == []
    assert events(database, taken) == before
    assert row(database, mine).logs == ["news"]


def test_progress_webhooks_are_queued_with_the_whole_run(database: Database) -> None:
    hook = creation.RunOptions(webhook="https://example.com/hook", webhook_events=["progress"])
    (watched,) = new_runs(database, 1, hook)
    (plain,) = new_runs(database, 1)
    claim_all(database, "gw")
    heartbeat(
        database,
        "gw",
        {run_id: runs.ProgressUpdate(0.5, ("a log",)) for run_id in (watched, plain)},
    )
    table = WebhookDeliveryRow.__table__
    with database.connect() as connection:
        queued = connection.execute(select(table.c.run_id, table.c.event, table.c.snapshot)).all()
    assert [(q.run_id, q.event) for q in queued] == [(watched, "progress")]
    snapshot = queued[0].snapshot
    assert snapshot["progress"] == 0.5 and snapshot["logs"] == ["a log"]
    assert snapshot["input"] == INPUT and snapshot["status"] == "processing"


def test_attempt_rows_before_and_after_the_submit(database: Database) -> None:
    (run_id,) = new_runs(database, 1)
    claim_all(database, "gw")
    with database.transaction() as connection:
        assert attempts.begin_attempt(connection, run_id, provider="ark", worker_id="x") is None
        first = attempts.begin_attempt(connection, run_id, provider="ark", worker_id="gw")
    assert first is not None and (first.number, first.state, first.task_id) == (
        1,
        "submitting",
        None,
    )
    with database.transaction() as connection:
        assert attempts.accept_attempt(connection, first.id, task_id="task-1")
        assert not attempts.accept_attempt(connection, first.id, task_id="task-2")
        assert attempts.end_attempt(
            connection,
            first.id,
            state="failed",
            error_class="task_failed",
            error_message="e" * 3000,
            cost_micros=0,
        )
        assert not attempts.end_attempt(connection, first.id, state="succeeded", cost_micros=5)
        second = attempts.begin_attempt(connection, run_id, provider="fal", worker_id="gw")
        assert second is not None and second.number == 2
        assert attempts.end_attempt(connection, second.id, state="succeeded", cost_micros=12)
        found = attempts.attempts_of(connection, run_id)
    assert [(a.number, a.provider, a.state, a.task_id) for a in found] == [
        (1, "ark", "failed", "task-1"),
        (2, "fal", "succeeded", None),
    ]
    assert found[0].error_message == "e" * 2000 and found[0].submitted_ms is not None
    assert found[1].cost_micros == 12 and found[1].finished_ms is not None
