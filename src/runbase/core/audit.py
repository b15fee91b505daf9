"""The admin audit log: every admin action, through the API or the command line.

An entry is written in the same transaction as the change it records, so a change that
rolls back leaves no entry, and no change is ever made without one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, Row, Table, insert, select

from runbase.core.clock import format_timestamp, now_ms
from runbase.storage.tables import AdminAuditRow

_AUDIT = cast(Table, AdminAuditRow.__table__)
MAX_PAGE = 200


@dataclass(frozen=True)
class Actor:
    """Who acts: `admin-token:<fingerprint>` from `address`, or `cli:<user>@<host>`."""

    name: str
    address: str | None = None


def record(
    connection: Connection,
    actor: Actor,
    action: str,
    target: str | None,
    details: dict[str, Any] | None = None,
) -> None:
    """Append one entry (never a secret: callers pass only what may be shown)."""
    connection.execute(
        insert(_AUDIT).values(
            created_ms=now_ms(),
            actor=actor.name[:100],
            address=actor.address,
            action=action,
            target=target,
            details=details or {},
        )
    )


def list_entries(
    connection: Connection, *, limit: int, before_id: int | None = None, action: str | None = None
) -> tuple[list[Row[Any]], int | None]:
    """Entries newest first; the second value is the `before` of the next page (or None)."""
    query = select(_AUDIT)
    if before_id is not None:
        query = query.where(_AUDIT.c.id < before_id)
    if action is not None:
        query = query.where(_AUDIT.c.action == action)
    rows = list(connection.execute(query.order_by(_AUDIT.c.id.desc()).limit(limit + 1)).all())
    if len(rows) > limit:
        return rows[:limit], int(rows[limit - 1].id)
    return rows, None


def describe_entry(entry: Row[Any]) -> dict[str, Any]:
    return {
        "id": entry.id,
        "at": format_timestamp(entry.created_ms),
        "actor": entry.actor,
        "address": entry.address,
        "action": entry.action,
        "target": entry.target,
        "details": entry.details,
    }
