"""Listing an account's runs: newest first, filtered, in pages joined by opaque cursors.

A cursor is the (created_ms, id) of the last run of a page, so paging is stable while new
runs arrive (they sort before it) and costs one index range scan per page.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, Row, Table, and_, or_

from runbase.core.runs import SELECT_RUNS
from runbase.errors import InvalidRequest
from runbase.storage.tables import RunRow

_RUNS = cast(Table, RunRow.__table__)
MAX_PAGE = 100


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
