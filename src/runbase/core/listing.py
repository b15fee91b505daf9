"""Reading runs: one by id (the polling hot path), or an account's runs newest first,
filtered, in pages joined by opaque cursors.

A cursor is the (created_ms, id) of the last run of a page, so paging is stable while new
runs arrive (they sort before it) and costs one index range scan per page.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, Row, Select, Table, and_, bindparam, case, func, or_, select

from runbase.errors import InvalidRequest, RunNotFound
from runbase.storage.prepared import Prepared
from runbase.storage.tables import RunRow

_RUNS = cast(Table, RunRow.__table__)
MAX_PAGE = 100
_OLDER = _RUNS.alias("older")
# Pending runs ahead of this one in claim order (created_ms, id). The `<=` bound lets the
# (status, created_ms) index stop at this run, so the count costs its queue position.
_QUEUE_POSITION = (
    select(func.count())
    .select_from(_OLDER)
    .where(
        _OLDER.c.status == "pending",
        _OLDER.c.created_ms <= _RUNS.c.created_ms,
        or_(_OLDER.c.created_ms < _RUNS.c.created_ms, _OLDER.c.id < _RUNS.c.id),
    )
    .scalar_subquery()
)
# Only what the run object shows: every other column is work for the polling hot path.
_SHOWN = [
    _RUNS.c[name]
    for name in (
        "id",
        "model",
        "status",
        "input",
        "output_keys",
        "error_code",
        "error_message",
        "cost_micros",
        "created_ms",
        "started_ms",
        "completed_ms",
        "backend",
        "progress",
        "logs",
    )
]
SELECT_RUNS: Select[Any] = select(
    *_SHOWN,
    case((_RUNS.c.status == "pending", _QUEUE_POSITION), else_=None).label("queue_position"),
)
"""Runs as the API shows them, with their `queue_position`: add the WHERE."""
_SELECT_RUN = Prepared(
    SELECT_RUNS.where(
        _RUNS.c.id == bindparam("run_id"), _RUNS.c.account_id == bindparam("account_id")
    )
)


def get_run(connection: Connection, run_id: str, *, account_id: str) -> Row[Any]:
    """A run of this account; another account's run is reported as missing, never forbidden.

    The hot path of polling (a `Prepared` statement): the row has the attributes of
    `RunRow` that the run object shows, and `queue_position` (pending runs ahead of it;
    None unless it is pending).
    """
    run = _SELECT_RUN.execute(connection, {"run_id": run_id, "account_id": account_id}).first()
    if run is None:
        raise RunNotFound(f"no run {run_id!r} exists for your account")
    return cast(Row[Any], run)


UNDELETED = _RUNS.c.deleted_ms.is_(None)
"""Runs not deleted through a compatible API (`runs.mark_deleted`): add it to their lists."""
_SELECT_UNDELETED_RUN = Prepared(
    SELECT_RUNS.where(
        _RUNS.c.id == bindparam("run_id"), _RUNS.c.account_id == bindparam("account_id"), UNDELETED
    )
)


def get_undeleted_run(connection: Connection, run_id: str, *, account_id: str) -> Row[Any]:
    """`get_run` for the compatible APIs: a run deleted through one of them is missing."""
    run = _SELECT_UNDELETED_RUN.execute(
        connection, {"run_id": run_id, "account_id": account_id}
    ).first()
    if run is None:
        raise RunNotFound(f"no run {run_id!r} exists for your account")
    return cast(Row[Any], run)


@dataclass(frozen=True)
class RunFilter:
    status: str | None = None
    model: str | None = None
    created_after_ms: int | None = None
    created_before_ms: int | None = None


def encode_cursor(run: Row[Any]) -> str:
    raw = f"{run.created_ms}:{run.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, run_id = raw.split(":", 1)
        return int(created), run_id
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidRequest("cursor is not one this API returned") from None


def list_runs(
    connection: Connection,
    *,
    account_id: str,
    limit: int,
    after: tuple[int, str] | None = None,
    where: RunFilter = RunFilter(),
) -> tuple[list[Row[Any]], str | None]:
    """One page of the account's runs, newest first, and the cursor of the next (or None)."""
    conditions: list[Any] = [_RUNS.c.account_id == account_id]
    if after is not None:
        created, run_id = after
        conditions.append(
            or_(
                _RUNS.c.created_ms < created,
                and_(_RUNS.c.created_ms == created, _RUNS.c.id < run_id),
            )
        )
    if where.status is not None:
        conditions.append(_RUNS.c.status == where.status)
    if where.model is not None:
        conditions.append(_RUNS.c.model == where.model)
    if where.created_after_ms is not None:
        conditions.append(_RUNS.c.created_ms > where.created_after_ms)
    if where.created_before_ms is not None:
        conditions.append(_RUNS.c.created_ms < where.created_before_ms)
    rows = list(
        connection.execute(
            SELECT_RUNS.where(*conditions)
            .order_by(_RUNS.c.created_ms.desc(), _RUNS.c.id.desc())
            .limit(limit + 1)
        ).all()
    )
    if len(rows) > limit:
        return rows[:limit], encode_cursor(rows[limit - 1])
    return rows, None
