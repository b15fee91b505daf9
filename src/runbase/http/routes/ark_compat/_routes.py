"""The `/api/v3/contents/generations/tasks` endpoints. Each one takes the caller's key like
the Runbase routes (`deps.ApiKey`: key, allowlist, rate limit, answered here in ModelArk's
envelope); creates go through `submission.prepare`/`submit`, so a task is checked, priced
and charged exactly as `POST /api/v1/runs` would charge its run.
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy import Connection

from runbase.core import runs
from runbase.core.listing import is_plausible_id
from runbase.core.run_view import Run
from runbase.errors import BadParameter, InvalidInput, MissingModel, RunNotFound
from runbase.http import submission
from runbase.http.deps import ApiKey, Services, get_services
from runbase.http.routes.ark_compat import _create, _task
from runbase.http.routes.ark_compat._errors import (
    ArkRequestError,
    ArkRoute,
    TaskStatusConflict,
    ark_headers,
)
from runbase.http.run_object import run_urls
from runbase.parsing import parse_int

router = APIRouter(
    prefix="/api/v3/contents/generations/tasks",
    tags=["modelark-compatible tasks"],
    route_class=ArkRoute,
)

DEFAULT_PAGE_SIZE: Final = 10
MAX_PAGE: Final = 500
MAX_TASK_IDS: Final = 100
_TASK: Final = {"description": "ModelArk's task object"}
# What a delete did; any other outcome is the task status that refused it.
_CANCELED_NOW: Final = "canceled now"
_DELETED_NOW: Final = "deleted now"
# ModelArk deletes only these; a cancelled task can be neither cancelled nor deleted.
_DELETABLE: Final = (runs.RunStatus.SUCCEEDED, runs.RunStatus.FAILED)


def _json(request: Request, body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, headers=ark_headers(request))


def _task_object(services: Services, request: Request, run: Run) -> dict[str, Any]:
    urls = run_urls(services, run, str(request.base_url))
    return _task.task_object(run, urls[0] if urls else None)


_LIST_PARAMETERS: Final = [
    {"name": "page_num", "in": "query", "schema": {"type": "integer", "minimum": 1}},
    {"name": "page_size", "in": "query", "schema": {"type": "integer", "minimum": 1}},
    {"name": "filter.status", "in": "query", "schema": {"type": "string"}},
    {"name": "filter.model", "in": "query", "schema": {"type": "string"}},
    {"name": "filter.service_tier", "in": "query", "schema": {"type": "string"}},
    {
        "name": "filter.task_ids",
        "in": "query",
        "schema": {"type": "array", "items": {"type": "string"}},
    },
]


@router.post(
    "",
    responses={200: {"description": '{"id": "<task id>"}'}},
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": _create.CREATE_SCHEMA}},
        }
    },
)
async def create_task(request: Request, key: ApiKey) -> JSONResponse:
    """Create a video generation task (ModelArk `content_generation.tasks.create`): charged
    now, generated in the background."""
    services = get_services(request)
    try:
        body = await submission.read_json_body(request)
    except MissingModel:
        raise ArkRequestError("The request body must be a JSON object.", param=None) from None
    ark = _create.create_body(body)
    try:
        prepared = submission.prepare(services, ark.body)
    except InvalidInput as error:
        if not error.message.startswith("webhook"):
            raise
        # The webhook rules speak of `webhook`; here the caller's field is `callback_url`.
        message = error.message.replace("webhook", "callback_url", 1)
        raise ArkRequestError(message, param="callback_url") from None
    run, _ = await submission.submit(
        services, key, prepared, request, cancel_after_ms=ark.cancel_after_ms
    )
    return _json(request, {"id": run.id})


@router.get("/{task_id}", responses={200: _TASK})
async def get_task(task_id: str, request: Request, key: ApiKey) -> JSONResponse:
    """A task (ModelArk `content_generation.tasks.get`)."""
    services = get_services(request)
    run = await services.database.read(
        lambda connection: _task.get_task_run(connection, task_id, owner=key.owner)
    )
    return _json(request, _task_object(services, request, run))


@router.get(
    "",
    responses={200: {"description": '{"items": [task...], "total": n}'}},
    openapi_extra={"parameters": _LIST_PARAMETERS},
)
async def list_tasks(request: Request, key: ApiKey) -> JSONResponse:
    """The account's tasks, newest first (ModelArk `content_generation.tasks.list`)."""
    services = get_services(request)
    query = request.query_params
    page_num = _page_number(query.get("page_num"), "page_num", 1)
    page_size = _page_number(query.get("page_size"), "page_size", DEFAULT_PAGE_SIZE)
    status = query.get("filter.status") or None
    if status is not None and status not in (*_task.RUN_STATUSES, "expired"):
        raise ArkRequestError(
            f"The parameter `filter.status` specified in the request is not valid: {status!r} "
            f"is not one of {', '.join(_task.RUN_STATUSES)}, expired.",
            param="filter.status",
        )
    model = query.get("filter.model") or None
    tier = query.get("filter.service_tier") or None
    task_ids = query.getlist("filter.task_ids")
    if len(task_ids) > MAX_TASK_IDS:
        raise BadParameter("filter.task_ids", f"give at most {MAX_TASK_IDS} task ids")
    # An id that could not be ours matches nothing (and is never sent to the database).
    known_ids = [task_id for task_id in task_ids if is_plausible_id(task_id)]
    matches_none = bool(task_ids) and not known_ids
    # Nothing here is ever `expired`, or of another tier or model: such filters match none.
    matches_none = matches_none or status == "expired" or tier not in (None, "default")
    if model is not None:
        model = _create.MODEL_IDS.get(model)
        matches_none = matches_none or model is None
    if matches_none:
        return _json(request, {"items": [], "total": 0})
    rows, total = await services.database.scan(
        lambda connection: _task.list_runs(
            connection,
            owner=key.owner,
            page_num=page_num,
            page_size=page_size,
            status=_task.RUN_STATUSES[status] if status else None,
            task_ids=known_ids,
            model=model,
        )
    )
    items = [_task_object(services, request, row) for row in rows]
    return _json(request, {"items": items, "total": total})


def _page_number(text: str | None, name: str, default: int) -> int:
    if text is None or text == "":
        return default
    return parse_int(text, name, low=1, high=MAX_PAGE)


@router.delete("/{task_id}", response_class=Response, responses={200: {"description": "Empty"}})
async def delete_task(task_id: str, request: Request, key: ApiKey) -> Response:
    """Cancel a queued task, or delete a finished one from this API's list (ModelArk
    `content_generation.tasks.delete`).

    A queued task is cancelled at once and refunded. A running task cannot be cancelled,
    nor can a cancelled one be deleted (409). A succeeded or failed task disappears from
    GET and the list here, and stays in `/api/v1/runs` as the record of its charge.
    """
    services = get_services(request)

    def delete(connection: Connection) -> str:
        run = _task.get_task_run(connection, task_id, owner=key.owner)
        status = runs.RunStatus(run.status)
        if status is runs.RunStatus.PENDING:
            reason = "the task was cancelled by its owner"
            if runs.cancel_run(connection, task_id, reason, only_pending=True):
                return _CANCELED_NOW
            return "running"  # a worker claimed it a moment ago
        if status in _DELETABLE:
            if not runs.mark_deleted(
                connection, task_id, owner=key.owner, statuses=_DELETABLE
            ):  # a concurrent delete marked it first
                raise RunNotFound(f"The task {task_id!r} was not found")
            return _DELETED_NOW
        return _task.STATUSES[status]

    outcome = await services.database.write(delete)
    if outcome == _CANCELED_NOW:
        services.signals.notify(task_id)
    elif outcome != _DELETED_NOW:
        raise TaskStatusConflict(
            f"The task {task_id!r} is {outcome}: only a queued task can be cancelled, and only "
            "a succeeded or failed task can be deleted"
        )
    return Response(status_code=200, headers=ark_headers(request))
