"""A run as ModelArk's task object; the task list; deleting a finished task from it.

Every run of the account is a task, whichever API created it; the task id is the run id.

    pending -> queued    processing -> running    succeeded    failed
    canceled -> cancelled

Deleting a finished task hides it from this API (GET answers 404, the list leaves it out)
but keeps the run, which is the record of its charge or refund: `/api/v1/runs` still
shows it. The mark is a row in `run_events` with sequence number -1 and kind
`ark_deleted`: no new column is needed, the (run_id, seq) unique constraint makes a
second mark impossible, and the SSE stream, which replays events numbered from 1, never
shows it.
"""

from __future__ import annotations

from typing import Any, Final, cast

from sqlalchemy import Connection, Row, Table, exists, func, insert, select

from runbase.core import listing
from runbase.core.clock import now_ms
from runbase.core.seedance import FPS, SIZES
from runbase.errors import RunNotFound
from runbase.storage.tables import RunEventRow, RunRow

STATUSES: Final = {
    "pending": "queued",
    "processing": "running",
    "succeeded": "succeeded",
    "failed": "failed",
    "canceled": "cancelled",
}
RUN_STATUSES: Final = {task: run for run, task in STATUSES.items()}
DELETED_KIND: Final = "ark_deleted"
DELETED_SEQ: Final = -1
_RUNS = cast(Table, RunRow.__table__)
_EVENTS = cast(Table, RunEventRow.__table__)
_IS_DELETED = exists().where(
    _EVENTS.c.run_id == _RUNS.c.id,
    _EVENTS.c.seq == DELETED_SEQ,
    _EVENTS.c.kind == DELETED_KIND,
)


def task_object(run: Row[Any], video_url: str | None) -> dict[str, Any]:
    """ModelArk's task object (`ContentGenerationTask`) of a run."""
    status = STATUSES[run.status]
    run_input = run.input
    seconds = int(run_input["duration"])
    updated_ms = run.completed_ms or run.started_ms or run.created_ms
    seed = run_input.get("seed")
    task: dict[str, Any] = {
        "id": run.id,
        "model": run.model,
        "status": status,
        "error": None,
        "created_at": run.created_ms // 1000,
        "updated_at": updated_ms // 1000,
        # The seed asked for; -1 when the engine picked one.
        "seed": seed if seed is not None else -1,
        "resolution": run_input["resolution"],
        "ratio": run_input.get("aspect_ratio") or "adaptive",
        "duration": seconds,
        "framespersecond": FPS,
        "generate_audio": run_input.get("generate_audio", True),
        "camera_fixed": run_input.get("camera_fixed", False),
        "service_tier": "default",
        "draft": False,
        "priority": 0,
        "output_format": "mp4",
    }
    if status == "succeeded" and video_url is not None:
        task["content"] = {"video_url": video_url}
        tokens = _video_tokens(run, seconds)
        task["usage"] = {"completion_tokens": tokens, "total_tokens": tokens}
    if run.error_code is not None:
        task["error"] = {"code": run.error_code, "message": run.error_message or ""}
    return task


def _video_tokens(run: Row[Any], seconds: int) -> int:
    """ModelArk's count, width x height x 24 x seconds / 1024, as the price counted them.

    A ratio picked from the image is not recorded; the price then counted the largest size
    of the resolution, and so does this.
    """
    ratio = run.input.get("aspect_ratio")
    resolution = run.input["resolution"]
    if ratio is not None:
        width, height = SIZES[(resolution, ratio)]
        area = width * height
    else:
        area = max(w * h for (res, _), (w, h) in SIZES.items() if res == resolution)
    return area * FPS * seconds // 1024


def get_task_run(connection: Connection, run_id: str, *, account_id: str) -> Row[Any]:
    """The run of a task that has not been deleted (RunNotFound otherwise)."""
    run = listing.get_run(connection, run_id, account_id=account_id)
    if is_deleted(connection, run_id):
        raise RunNotFound(f"The task {run_id!r} was not found")
    return run


def is_deleted(connection: Connection, run_id: str) -> bool:
    query = select(_EVENTS.c.id).where(
        _EVENTS.c.run_id == run_id,
        _EVENTS.c.seq == DELETED_SEQ,
        _EVENTS.c.kind == DELETED_KIND,
    )
    return connection.execute(query).first() is not None


def mark_deleted(connection: Connection, run: Row[Any]) -> None:
    """Hide a finished task from this API (an IntegrityError if it already is)."""
    connection.execute(
        insert(_EVENTS).values(
            run_id=run.id,
            seq=DELETED_SEQ,
            kind=DELETED_KIND,
            status=run.status,
            progress=run.progress,
            created_ms=now_ms(),
        )
    )


def list_runs(
    connection: Connection,
    *,
    account_id: str,
    page_num: int,
    page_size: int,
    status: str | None,
    task_ids: list[str],
    model: str | None,
) -> tuple[list[Row[Any]], int]:
    """One page of the account's tasks, newest first, and how many match in all."""
    conditions: list[Any] = [_RUNS.c.account_id == account_id, ~_IS_DELETED]
    if status is not None:
        conditions.append(_RUNS.c.status == status)
    if task_ids:
        conditions.append(_RUNS.c.id.in_(task_ids))
    if model is not None:
        conditions.append(_RUNS.c.model == model)
    total = connection.execute(
        select(func.count()).select_from(_RUNS).where(*conditions)
    ).scalar_one()
    rows = connection.execute(
        listing.SELECT_RUNS.where(*conditions)
        .order_by(_RUNS.c.created_ms.desc(), _RUNS.c.id.desc())
        .offset((page_num - 1) * page_size)
        .limit(page_size)
    ).all()
    return list(rows), int(total)
