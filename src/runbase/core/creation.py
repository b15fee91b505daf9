"""Creating a run: the one transaction that checks the key's limits, charges the account
and inserts the run, for every surface that creates one (the Runbase routes and the
ModelArk- and OpenAI-compatible ones parse and price their requests in `http.submission`,
then come here).

    create_or_replay   the create as a write function: with an Idempotency-Key, a repeat
                       answers the first create's run instead of charging again
    create_run         quota, spend limit and balance checks, the insert, the charge and
                       the run's first event
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, Table, bindparam, func, insert, select, update

from runbase.core import billing, idempotency, listing
from runbase.core.clock import new_id, now_ms
from runbase.core.events import EventKind, record_event
from runbase.core.keys import KeyRecord
from runbase.core.run_view import Run
from runbase.core.transitions import RunStatus
from runbase.errors import IdempotencyKeyInUse, RunNotFound, SpendLimitExceeded, UsageExceeded
from runbase.storage.prepared import PreparedStatement
from runbase.storage.tables import ApiKeyRow, RunRow

DAY_MS = 24 * 3600 * 1000

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


@dataclass(frozen=True)
class RunOptions:
    """What a create may ask beyond the input (all optional, all extensions)."""

    deadline_ms: int | None = None
    """Cancel-After, as an instant: past it the run is canceled and refunded."""
    webhook: str | None = None
    webhook_events: Sequence[str] | None = None
    public_base_url: str | None = None


@dataclass(frozen=True)
class NewRun:
    """A create, checked and priced, its images already stored (`storage.inputs`)."""

    model: str
    input: Mapping[str, Any]
    cost: int
    options: RunOptions = RunOptions()


@dataclass(frozen=True)
class Idempotency:
    """An `Idempotency-Key` and the hash of the request it came with."""

    key: str
    request_hash: str


def create_or_replay(
    connection: Connection, key: KeyRecord, new: NewRun, idempotency_: Idempotency | None = None
) -> tuple[Run, bool]:
    """One transaction: the run and its charge, or (True) the run an earlier request with
    the same Idempotency-Key created."""
    run_id = new_id("run")
    if idempotency_ is not None:
        first = idempotency.claim_key(
            connection,
            owner=key.owner,
            key=idempotency_.key,
            request_hash=idempotency_.request_hash,
            run_id=run_id,
        )
        if first is not None:
            try:
                return listing.get_run(connection, first.run_id, owner=key.owner), True
            except RunNotFound:
                raise IdempotencyKeyInUse() from None
    run = create_run(
        connection,
        key=key,
        model=new.model,
        validated_input=new.input,
        cost=new.cost,
        run_id=run_id,
        options=new.options,
    )
    return run, False


def create_run(
    connection: Connection,
    *,
    key: KeyRecord,
    model: str,
    validated_input: Mapping[str, Any],
    cost: int,
    run_id: str | None = None,
    options: RunOptions = RunOptions(),
) -> Run:
    """Check quota, spend limit and balance, then insert the run and charge it; answers
    the new run.

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
    run = Run(
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
        deleted_ms=None,
    )
    billing.charge_run(connection, account_id=key.account_id, run_id=run.id, cost=cost, book=book)
    values = run._asdict()
    del values["queue_position"]
    _INSERT_RUN.execute(connection, values)
    record_event(connection, run, EventKind.STATUS, seq=1)
    return run
