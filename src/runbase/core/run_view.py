"""`Run`: the one shape of a run everywhere above storage.

Whatever reads or changes a run (a poll, a list, a claim, a guarded update's RETURNING, a
create, a webhook's snapshot) answers a `Run`, built here from what the database gave back,
the same on SQLite and PostgreSQL. Routes, workers, the provider gateway, webhooks and
events all take this one type.

It is an immutable named tuple rather than a frozen dataclass because it is built on the
polling hot path: with 27 fields a frozen dataclass costs about 11 us to build (each field
goes through `object.__setattr__`), a named tuple under 1 us. Its fields are every column of
the `runs` table plus `queue_position`, in that order, so a row selected with `RUN_COLUMNS`
(as `listing`, `claims` and `runs` do) becomes a `Run` without renaming anything.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NamedTuple, cast

from sqlalchemy import Column, Table

from runbase.storage.tables import RunRow

__all__ = ["RUN_COLUMNS", "Run", "run_from_snapshot", "run_of"]


class Run(NamedTuple):
    """One run, as the database held it when it was read or changed."""

    id: str
    account_id: str
    key_id: str
    model: str
    input: dict[str, Any]
    status: str
    cost_micros: int
    backend: str | None
    output_keys: list[str] | None
    error_code: str | None
    error_message: str | None
    progress: float
    logs: list[str]
    created_ms: int
    started_ms: int | None
    completed_ms: int | None
    attempts: int
    worker_id: str | None
    lease_expires_ms: int | None
    is_test: bool
    cancel_requested: bool
    deadline_ms: int | None
    webhook: str | None
    webhook_events: list[str] | None
    public_base_url: str | None
    deleted_ms: int | None
    queue_position: int | None = None
    """Pending runs ahead of this one; only reads by the runs API fill it in."""


_RUNS = cast(Table, RunRow.__table__)
RUN_COLUMNS: tuple[Column[Any], ...] = tuple(_RUNS.c[name] for name in Run._fields[:-1])
"""The `runs` columns in `Run`'s order: select (or return) these, and `run_of` the rows."""


def run_of(row: Any) -> Run:
    """The `Run` of a row selected with `RUN_COLUMNS` (and optionally `queue_position`)."""
    return Run(*row)


def run_from_snapshot(snapshot: Mapping[str, Any]) -> Run:
    """The `Run` of a webhook's snapshot (`core.events`: its columns by name). A snapshot
    taken before a column existed lacks it, and reads it as None."""
    return Run._make([*(snapshot.get(name) for name in Run._fields[:-1]), None])
