"""Reading runs: one by id (the polling hot path), or an owner's runs newest first,
filtered, in pages joined by opaque cursors.

Every read is of one `Owner`'s runs: an account's, in one mode. As in Stripe, a test key
(`sk-test-...`) sees only the account's test runs and a live key only its live runs;
another owner's run is reported as missing, never forbidden.

A cursor is the (created_ms, id) of the last run of a page, so paging is stable while new
runs arrive (they sort before it) and costs one index range scan per page.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, Select, Table, and_, bindparam, case, func, or_, select

from runbase.core.run_view import RUN_COLUMNS, Run, run_of
from runbase.errors import BadParameter, RunNotFound
from runbase.parsing import read_int
from runbase.storage.prepared import PreparedStatement
from runbase.storage.tables import RunRow

_RUNS = cast(Table, RunRow.__table__)
MAX_PAGE = 100
_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")


@dataclass(frozen=True)
class Owner:
    """Whose runs a request may see and change: one account's, in one mode (test or
    live, the mode of the request's key)."""

    account_id: str
    is_test: bool


def owned_by(owner: Owner) -> list[Any]:
    """The WHERE conditions of an owner's runs."""
    return [_RUNS.c.account_id == owner.account_id, _RUNS.c.is_test == owner.is_test]


def is_plausible_id(text: str) -> bool:
    """Whether `text` could be one of our ids (a prefix, "_" and a ULID). Anything else
    names no row, and is not looked up: a NUL or a lone surrogate would make the database
    driver fail instead of finding nothing."""
    return _ID.fullmatch(text) is not None


def _missing(run_id: str) -> RunNotFound:
    return RunNotFound(f"no run {run_id!r} exists for your account")


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
# Every column: one shape of a run (`core.run_view`) whichever read made it. The columns the
# run object does not show cost the poll about a microsecond.
SELECT_RUNS: Select[Any] = select(
    *RUN_COLUMNS,
    case((_RUNS.c.status == "pending", _QUEUE_POSITION), else_=None).label("queue_position"),
)
"""Runs as the API shows them, with their `queue_position`: add the WHERE."""
_OWNED_RUN = (
    _RUNS.c.id == bindparam("run_id"),
    _RUNS.c.account_id == bindparam("account_id"),
    _RUNS.c.is_test == bindparam("is_test"),
)
_SELECT_RUN = PreparedStatement(SELECT_RUNS.where(*_OWNED_RUN), row=Run)


def get_run(connection: Connection, run_id: str, *, owner: Owner) -> Run:
    """A run of this owner; any other run is reported as missing, never forbidden.

    The hot path of polling (a `PreparedStatement` statement), with `queue_position`
    (pending runs ahead of it; None unless it is pending).
    """
    return _read_one(connection, _SELECT_RUN, run_id, owner)


UNDELETED = _RUNS.c.deleted_ms.is_(None)
"""Runs not deleted through a compatible API (`runs.mark_deleted`): add it to their lists."""
_SELECT_UNDELETED_RUN = PreparedStatement(SELECT_RUNS.where(*_OWNED_RUN, UNDELETED), row=Run)


def get_undeleted_run(connection: Connection, run_id: str, *, owner: Owner) -> Run:
    """`get_run` for the compatible APIs: a run deleted through one of them is missing."""
    return _read_one(connection, _SELECT_UNDELETED_RUN, run_id, owner)


def _read_one(
    connection: Connection, statement: PreparedStatement, run_id: str, owner: Owner
) -> Run:
    if not is_plausible_id(run_id):
        raise _missing(run_id)
    params = {"run_id": run_id, "account_id": owner.account_id, "is_test": owner.is_test}
    run = statement.execute(connection, params).first()
    if run is None:
        raise _missing(run_id)
    return cast(Run, run)


@dataclass(frozen=True)
class RunFilter:
    status: str | None = None
    model: str | None = None
    created_after_ms: int | None = None
    created_before_ms: int | None = None


def encode_cursor(run: Run) -> str:
    raw = f"{run.created_ms}:{run.id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str]:
    """The (created_ms, id) of a cursor from `encode_cursor`; 400 for anything else."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raw = ""
    created_text, _, run_id = raw.partition(":")
    created = read_int(created_text)
    if created is None or not run_id or not is_plausible_id(run_id):
        raise BadParameter("cursor", "cursor is not one this API returned")
    return created, run_id


def list_runs(
    connection: Connection,
    *,
    owner: Owner,
    limit: int,
    after: tuple[int, str] | None = None,
    where: RunFilter = RunFilter(),
) -> tuple[list[Run], str | None]:
    """One page of the owner's runs, newest first, and the cursor of the next (or None)."""
    conditions = owned_by(owner)
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
    rows = [
        run_of(row)
        for row in connection.execute(
            SELECT_RUNS.where(*conditions)
            .order_by(_RUNS.c.created_ms.desc(), _RUNS.c.id.desc())
            .limit(limit + 1)
        )
    ]
    if len(rows) > limit:
        return rows[:limit], encode_cursor(rows[limit - 1])
    return rows, None
