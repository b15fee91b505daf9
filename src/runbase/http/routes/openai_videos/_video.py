"""A run as OpenAI's Video object, and pages of them in OpenAI's list shape.

Every run of the account is a video, whichever API created it, unless it was deleted
through a compatible API (`runs.mark_deleted`); the video id is the run id.

    pending -> queued    processing -> in_progress    succeeded -> completed
    failed -> failed     canceled -> failed, with error.code "canceled"
"""

from __future__ import annotations

from typing import Any, Final, cast

from sqlalchemy import Connection, Table, and_, or_

from runbase.core import listing
from runbase.core.catalog import MODELS
from runbase.core.run_view import Run, run_of
from runbase.errors import RunNotFound
from runbase.http.routes.openai_videos._errors import VideoRequestError
from runbase.parsing import readable
from runbase.storage.tables import RunRow

MAX_PAGE: Final = listing.MAX_PAGE
_RUNS = cast(Table, RunRow.__table__)
_STATUSES: Final = {
    "pending": "queued",
    "processing": "in_progress",
    "succeeded": "completed",
    "failed": "failed",
    "canceled": "failed",
}


def video_object(run: Run) -> dict[str, Any]:
    """The Video object of a run (`openai.types.Video`)."""
    status = _STATUSES[run.status]
    progress = 100 if status == "completed" else min(99, max(0, int(run.progress * 100)))
    error = None
    if run.error_code is not None:
        error = {"code": run.error_code, "message": readable(run.error_message or "")}
    finished = status in ("completed", "failed")
    return {
        "id": run.id,
        "object": "video",
        "model": run.model,
        "status": status,
        "progress": progress,
        "created_at": run.created_ms // 1000,
        "completed_at": run.completed_ms // 1000 if finished and run.completed_ms else None,
        # Outputs are kept until an operator removes them; links to them are re-signed.
        "expires_at": None,
        "prompt": readable(run.input.get("prompt")),
        "seconds": str(run.input.get("duration")),
        "size": video_size(run),
        "remixed_from_video_id": None,
        "error": error,
    }


def video_size(run: Run) -> str | None:
    """ "WxH" of the run's output; None while a native run's ratio waits on its image."""
    spec = MODELS.get(run.model)
    if spec is None or run.input.get("aspect_ratio") is None:
        return None
    geometry = spec.output_geometry(run.input, None)
    return f"{geometry.width}x{geometry.height}"


def list_page(
    connection: Connection,
    *,
    owner: listing.Owner,
    limit: int,
    after: str | None,
    ascending: bool,
) -> dict[str, Any]:
    """One page in OpenAI's list shape; `after` is the last video id of the page before
    (it may have been deleted since: it still marks the place)."""
    conditions: list[Any] = [*listing.owned_by(owner), listing.UNDELETED]
    if after is not None:
        try:
            anchor = listing.get_run(connection, after, owner=owner)
        except RunNotFound:
            raise VideoRequestError(
                f"after: no video {after!r} exists for your account", param="after"
            ) from None
        conditions.append(
            or_(
                _beyond(_RUNS.c.created_ms, anchor.created_ms, ascending),
                and_(
                    _RUNS.c.created_ms == anchor.created_ms,
                    _beyond(_RUNS.c.id, anchor.id, ascending),
                ),
            )
        )
    order = (
        (_RUNS.c.created_ms.asc(), _RUNS.c.id.asc())
        if ascending
        else (_RUNS.c.created_ms.desc(), _RUNS.c.id.desc())
    )
    rows = connection.execute(
        listing.SELECT_RUNS.where(*conditions).order_by(*order).limit(limit + 1)
    ).all()
    data = [video_object(run_of(row)) for row in rows[:limit]]
    return {
        "object": "list",
        "data": data,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
        "has_more": len(rows) > limit,
    }


def _beyond(column: Any, value: Any, ascending: bool) -> Any:
    """`column` comes after `value` in the page's order."""
    return column > value if ascending else column < value
