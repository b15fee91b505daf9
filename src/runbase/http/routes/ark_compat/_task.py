"""A run as ModelArk's task object, and the task list.

Every run of the account is a task, whichever API created it; the task id is the run id.

    pending -> queued    processing -> running    succeeded    failed
    canceled -> cancelled

A deleted run (`runs.mark_deleted`, through this API or the OpenAI-compatible one) is
missing here: GET answers 404 and the list leaves it out. The run stays, as the record
of its charge or refund, and `/api/v1/runs` still shows it.
"""

from __future__ import annotations

from typing import Any, Final, cast

from sqlalchemy import Connection, Table, func, select

from runbase.core import listing
from runbase.core.run_view import Run, run_of
from runbase.core.seedance import FPS, SIZES
from runbase.errors import RunNotFound
from runbase.parsing import readable
from runbase.storage.tables import RunRow

STATUSES: Final = {
    "pending": "queued",
    "processing": "running",
    "succeeded": "succeeded",
    "failed": "failed",
    "canceled": "cancelled",
}
RUN_STATUSES: Final = {task: run for run, task in STATUSES.items()}
_RUNS = cast(Table, RunRow.__table__)


def task_object(run: Run, video_url: str | None) -> dict[str, Any]:
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
        task["error"] = {"code": run.error_code, "message": readable(run.error_message or "")}
    return task


def _video_tokens(run: Run, seconds: int) -> int:
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


def get_task_run(connection: Connection, run_id: str, *, owner: listing.Owner) -> Run:
    """The run of a task that has not been deleted (RunNotFound otherwise)."""
    try:
        return listing.get_undeleted_run(connection, run_id, owner=owner)
    except RunNotFound:
        raise RunNotFound(f"The task {run_id!r} was not found") from None


def list_runs(
    connection: Connection,
    *,
    owner: listing.Owner,
    page_num: int,
    page_size: int,
    status: str | None,
    task_ids: list[str],
    model: str | None,
) -> tuple[list[Run], int]:
    """One page of the account's tasks, newest first, and how many match in all."""
    conditions: list[Any] = [*listing.owned_by(owner), listing.UNDELETED]
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
    )
    return [run_of(row) for row in rows], int(total)
