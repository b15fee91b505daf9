"""The `/v1/videos` endpoints. Each one takes the caller's key like the Runbase routes
(`deps.ApiKey`: key, allowlist, rate limit, answered here in OpenAI's envelope); creates
go through `submission.prepare`/`submit`, so a video is checked, priced and charged
exactly as `POST /api/v1/runs` would charge its run.
"""

from __future__ import annotations

import asyncio
import io
from pathlib import Path
from typing import Any, Final

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from PIL import Image

from runbase.core import listing, runs
from runbase.core.run_view import Run
from runbase.errors import RunNotFound, ServerError
from runbase.http import submission
from runbase.http.deps import ApiKey, Services, get_services
from runbase.http.file_response import RangeFileResponse
from runbase.http.ratelimit import rate_limit_headers
from runbase.http.routes.openai_videos import _create, _video
from runbase.http.routes.openai_videos._errors import (
    OpenAIRoute,
    VideoConflict,
    VideoNotFound,
    VideoNotReady,
    VideoRequestError,
)
from runbase.http.waiting import cancel_and_wait
from runbase.media.probe import read_frames
from runbase.parsing import parse_int
from runbase.storage.blob_location import RemoteFile

router = APIRouter(prefix="/v1/videos", tags=["openai-compatible videos"], route_class=OpenAIRoute)

_DEFAULT_PAGE: Final = 20
_VARIANTS: Final = ("video", "thumbnail")
_VIDEO_OBJECT: Final = {"description": "OpenAI's Video object"}
# Every final status: OpenAI shows a canceled video as `failed`, and deletes failed ones.
_FINISHED: Final = tuple(status for status in runs.RunStatus if status.is_terminal())
_CREATE_BODY: Final = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["prompt"],
                    "properties": {
                        "prompt": {"type": "string"},
                        "model": {"type": "string", "default": "bytedance/seedance-1.5-pro"},
                        "size": {"enum": list(_create.SIZES), "default": _create.DEFAULT_SIZE},
                        "seconds": {"enum": ["4", "8", "12"], "default": "4"},
                        "input_reference": {
                            "type": "string",
                            "format": "binary",
                            "description": "An image: the first frame",
                        },
                    },
                }
            },
            "application/json": {"schema": {"type": "object"}},
        },
    }
}


async def _find_run(services: Services, video_id: str, owner: listing.Owner) -> Run:
    try:
        return await services.database.read(
            lambda connection: listing.get_undeleted_run(connection, video_id, owner=owner)
        )
    except RunNotFound:
        raise VideoNotFound(f"no video {video_id!r} exists for your account") from None


def _json(request: Request, body: dict[str, Any]) -> JSONResponse:
    return JSONResponse(body, headers=rate_limit_headers(request))


@router.post("", responses={200: _VIDEO_OBJECT}, openapi_extra=_CREATE_BODY)
async def create_video(request: Request, key: ApiKey) -> JSONResponse:
    """Create a video (OpenAI `videos.create`): charged now, generated in the background."""
    services = get_services(request)
    fields = await _create.read_fields(request)
    body, upload = _create.create_body(fields, services.settings)
    if upload is not None:
        # After create_body's checks, so that a bad size is refused before any decoding.
        body["input"]["image_urls"] = [await _create.reference_data_uri(upload)]
    prepared = submission.prepare(services, body)
    run, _ = await submission.submit(services, key, prepared, request)
    return _json(request, _video.video_object(run))


@router.get(
    "",
    responses={200: {"description": "A page of Video objects"}},
    openapi_extra={
        "parameters": [
            {
                "name": "limit",
                "in": "query",
                "schema": {"type": "integer", "minimum": 1, "maximum": _video.MAX_PAGE},
            },
            {"name": "after", "in": "query", "schema": {"type": "string"}},
            {"name": "order", "in": "query", "schema": {"enum": ["asc", "desc"]}},
        ]
    },
)
async def list_videos(request: Request, key: ApiKey) -> JSONResponse:
    """The account's videos (OpenAI `videos.list`): newest first unless `order=asc`."""
    services = get_services(request)
    query = request.query_params
    limit = parse_int(query.get("limit", str(_DEFAULT_PAGE)), "limit", low=1, high=_video.MAX_PAGE)
    after = query.get("after")
    order = query.get("order", "desc")
    if order not in ("asc", "desc"):
        raise VideoRequestError("order must be asc or desc", param="order")
    page = await services.database.scan(
        lambda connection: _video.list_page(
            connection,
            owner=key.owner,
            limit=limit,
            after=after,
            ascending=order == "asc",
        )
    )
    return _json(request, page)


@router.get("/{video_id}", responses={200: _VIDEO_OBJECT})
async def retrieve_video(video_id: str, request: Request, key: ApiKey) -> JSONResponse:
    """A video's status and progress (OpenAI `videos.retrieve`)."""
    services = get_services(request)
    run = await _find_run(services, video_id, key.owner)
    return _json(request, _video.video_object(run))


@router.delete("/{video_id}", responses={200: {"description": "OpenAI's deleted object"}})
async def delete_video(video_id: str, request: Request, key: ApiKey) -> JSONResponse:
    """Delete a finished video, or stop and refund an unfinished one (OpenAI `videos.delete`).

    A completed or failed video is deleted: from then on this API (and the ModelArk one)
    answers 404 for it and its list leaves it out, while the run stays in `/api/v1/runs`
    as the record of its charge. A queued video is canceled at once; an in-progress one
    once its engine stops (409 if it has not within `RUNBASE_CANCEL_WAIT_SECONDS`). A
    canceled video answers `deleted: true` and reads as `failed` with error code
    `canceled` until it is deleted in turn.
    """
    services = get_services(request)
    run = await _find_run(services, video_id, key.owner)
    if runs.RunStatus(run.status).is_terminal():
        deleted = await services.database.write(
            lambda connection: runs.mark_deleted(
                connection, video_id, owner=key.owner, statuses=_FINISHED
            )
        )
        if not deleted:  # a concurrent delete marked it first
            raise VideoNotFound(f"no video {video_id!r} exists for your account")
        return _deleted(request, video_id, True)
    run = await cancel_and_wait(services, video_id, owner=key.owner)
    if run.status == runs.RunStatus.PROCESSING:
        raise VideoConflict(
            f"the video's engine did not stop within {services.settings.cancel_wait_seconds:g}"
            " s; it stays marked for canceling and is refunded when it stops"
        )
    # Finished meanwhile on its own (nothing was canceled): `deleted: false`.
    return _deleted(request, video_id, run.status == runs.RunStatus.CANCELED)


def _deleted(request: Request, video_id: str, deleted: bool) -> JSONResponse:
    return _json(request, {"id": video_id, "object": "video.deleted", "deleted": deleted})


_CONTENT_ROUTE: Final[dict[str, Any]] = {
    "response_class": Response,
    "responses": {
        200: {
            "content": {"video/mp4": {}, "image/jpeg": {}},
            "description": "The MP4 (Range requests work), or a JPEG of its first frame",
        },
        206: {"content": {"video/mp4": {}}, "description": "The parts the Range asked for"},
        302: {"description": "With S3 storage: the bucket's presigned link to the MP4"},
    },
}


# Two routes, not one with two methods: each needs its own operation in the document.
@router.head("/{video_id}/content", **_CONTENT_ROUTE)
@router.get("/{video_id}/content", **_CONTENT_ROUTE)
async def download_video_content(video_id: str, request: Request, key: ApiKey) -> Response:
    """The video's bytes (OpenAI `videos.download_content`); `variant=thumbnail`: a JPEG."""
    services = get_services(request)
    variant = request.query_params.get("variant", "video")
    if variant not in _VARIANTS:
        raise VideoRequestError(
            f"variant {variant!r} is not available; available: {', '.join(_VARIANTS)}",
            param="variant",
        )
    run = await _find_run(services, video_id, key.owner)
    if run.status != runs.RunStatus.SUCCEEDED or not run.output_keys:
        status = _video.video_object(run)["status"]
        raise VideoNotReady(
            f"video {video_id!r} is {status}; its content is available once it is completed"
        )
    blob_key = run.output_keys[0]  # the MP4 comes first
    headers = rate_limit_headers(request)
    try:
        location = services.blobs.locate(blob_key, base_url=str(request.base_url), ttl_seconds=600)
    except FileNotFoundError:
        raise ServerError(f"the file of video {video_id!r} is missing from storage") from None
    if isinstance(location, RemoteFile):
        if variant != "video":
            raise VideoRequestError(
                "thumbnails are made from files this server holds; with S3 storage only the "
                "video is available",
                param="variant",
            )
        # The bucket serves the bytes; the SDK follows the redirect.
        return RedirectResponse(location.url, status_code=302, headers=headers)
    if variant == "thumbnail":
        jpeg = await asyncio.to_thread(_first_frame_jpeg, location.path)
        return Response(jpeg, media_type="image/jpeg", headers=headers)
    response = RangeFileResponse(request, location)
    response.headers.update(headers)
    return response


def _first_frame_jpeg(path: Path) -> bytes:
    [frame] = read_frames(path, [0])
    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()
