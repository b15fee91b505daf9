"""Extension: `GET /api/v1/runs/{id}/events`, a run's changes as server-sent events.

    id: 3
    event: progress
    data: {"runId": "run_...", "status": "processing", "progress": 0.4, "at": "..."}

Every event has the run's own sequence number as its id, so a client that reconnects with
`Last-Event-ID` gets exactly what it missed (the events are stored, `core.events`). The
first event of a run is `status` pending; the stream ends after the final `status` event
(succeeded, failed or canceled), whose data also holds the whole run object.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Any, Final

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from sqlalchemy import Row

from runbase.core import events, listing, runs
from runbase.core.clock import format_timestamp
from runbase.http.deps import ApiKey, Services, get_services
from runbase.http.ratelimit import rate_limit_headers
from runbase.http.run_object import run_read
from runbase.http.waiting import POLL_SECONDS
from runbase.parsing import last_event_id

router = APIRouter(tags=["runs"])

KEEPALIVE_SECONDS: Final = 15.0


def _frame(run_id: str, event: Row[Any], run: dict[str, Any] | None) -> bytes:
    data: dict[str, Any] = {
        "runId": run_id,
        "status": event.status,
        "progress": event.progress,
        "at": format_timestamp(event.created_ms),
    }
    if run is not None:
        data["run"] = run
    payload = json.dumps(data, separators=(",", ":"))
    return f"id: {event.seq}\nevent: {event.kind}\ndata: {payload}\n\n".encode()


async def _stream(
    services: Services, run_id: str, owner: listing.Owner, after: int, base_url: str
) -> AsyncIterator[bytes]:
    yield b"retry: 1000\n\n"
    keepalive_at = time.monotonic() + KEEPALIVE_SECONDS
    while True:
        # The run first, then its events: a final run read here has its final event below.
        run = await services.database.read(
            lambda connection: listing.get_run(connection, run_id, owner=owner)
        )
        new = await services.database.read(
            lambda connection, after=after: events.events_after(connection, run_id, after)  # type: ignore[misc]
        )
        is_final = runs.RunStatus(run.status).is_terminal()
        for event in new:
            ends = (
                event.kind == events.EventKind.STATUS and runs.RunStatus(event.status).is_terminal()
            )
            yield _frame(run_id, event, run_read(services, run, base_url) if ends else None)
            after = event.seq
            if ends:
                return
        if is_final:  # a run older than its events table: nothing more will come
            return
        if not await services.signals.wait(run_id, POLL_SECONDS) and (
            time.monotonic() >= keepalive_at
        ):
            yield b": keep-alive\n\n"  # a comment: keeps proxies from closing an idle stream
            keepalive_at = time.monotonic() + KEEPALIVE_SECONDS


@router.get(
    "/runs/{run_id}/events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}, "description": "The run's events"}},
    openapi_extra={
        "parameters": [
            {
                "name": "Last-Event-ID",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "pattern": "^[0-9]+$"},
                "description": "Resume after this event (what EventSource sends on reconnect)",
            }
        ]
    },
)
async def stream_run_events(run_id: str, request: Request, key: ApiKey) -> StreamingResponse:
    """Extension: the run's status and progress changes as server-sent events."""
    services = get_services(request)
    after = last_event_id(request.headers.get("last-event-id"))
    await services.database.read(  # 404 before the stream starts
        lambda connection: listing.get_run(connection, run_id, owner=key.owner)
    )
    headers = rate_limit_headers(request)
    headers.update({"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    return StreamingResponse(
        _stream(services, run_id, key.owner, after, str(request.base_url)),
        media_type="text/event-stream",
        headers=headers,
    )
