"""Creating a run, for every surface that creates one: the Runbase routes and the
ModelArk- and OpenAI-compatible ones. Each surface parses its own request into a Runbase
create body (`{"model", "input", ...}`), then calls `prepare` and `submit`; the checks, the
price and the one transaction that charges and inserts the run (`core.creation`) are the
same for all.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Connection
from starlette.requests import Request

from runbase.core import creation, idempotency
from runbase.core.catalog import find_model
from runbase.core.clock import now_ms
from runbase.core.keys import KeyRecord
from runbase.core.run_view import Run
from runbase.core.seedance import MAX_DATA_URI_CHARS
from runbase.core.webhooks import check_webhook
from runbase.dispatch.wakeup import announce_work
from runbase.errors import MissingInput, MissingModel, NoEngineAvailable, RequestTooLarge
from runbase.http.deps import Services
from runbase.parsing import declared_length, parse_json
from runbase.storage import inputs


@dataclass(frozen=True)
class CheckedCreate:
    """A create's body, checked and priced (everything before the transaction)."""

    body: dict[str, Any]
    model: str
    validated: dict[str, Any]
    cost: int
    webhook: str | None
    webhook_events: list[str] | None


MAX_BODY_BYTES: Final = 2 * MAX_DATA_URI_CHARS + 1024 * 1024
"""More than any valid create needs: two images as data URIs and a prompt."""
INLINE_PARSE_BYTES: Final = 256 * 1024


async def read_body(request: Request) -> bytes:
    """The request's body, refused (413 request_too_large) past `MAX_BODY_BYTES` without
    reading the rest: a huge body would otherwise sit whole in memory."""
    declared = declared_length(request.headers.get("content-length"))
    if declared is not None and declared > MAX_BODY_BYTES:
        raise RequestTooLarge(f"the request body may be at most {MAX_BODY_BYTES} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise RequestTooLarge(f"the request body may be at most {MAX_BODY_BYTES} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def read_json_body(request: Request) -> dict[str, Any]:
    """The request's body as a create's JSON object (400 invalid_json, as
    `parsing.parse_json` reads it; missing_model when it is not an object)."""
    body = await parse_json_body(await read_body(request))
    if not isinstance(body, dict):
        raise MissingModel("the request body must be a JSON object with `model` and `input`")
    return body


async def parse_json_body(raw: bytes) -> Any:
    """`parsing.parse_json`; a large body (images as data URIs) in a thread, so that the
    event loop goes on meanwhile."""
    if len(raw) > INLINE_PARSE_BYTES:
        return await asyncio.to_thread(parse_json, raw)
    return parse_json(raw)


def prepare(services: Services, body: dict[str, Any]) -> CheckedCreate:
    """Validate and price a create body, in the contract's order of checks."""
    model_id = body.get("model")
    if not isinstance(model_id, str) or not model_id:
        raise MissingModel()
    spec = find_model(model_id)
    raw_input = body.get("input")
    if not isinstance(raw_input, dict):
        raise MissingInput()
    validated = spec.validate_input(raw_input)
    if services.pools is not None:  # what no provider of the route can make is refused now
        services.pools.check_input(model_id, validated)
    webhook, events = None, None
    if body.get("webhook") is not None or body.get("webhookEventsFilter") is not None:
        settings = services.settings
        webhook, events = check_webhook(
            body.get("webhook"),
            body.get("webhookEventsFilter"),
            http_hosts=settings.webhook_http_hosts,
            allow_private_hosts=settings.allow_private_webhook_hosts,
        )
    cost = spec.price_micros(validated, services.price_rates)
    return CheckedCreate(body, model_id, validated, cost, webhook, events)


async def submit(
    services: Services,
    key: KeyRecord,
    prepared: CheckedCreate,
    request: Request,
    *,
    cancel_after_ms: int | None = None,
) -> tuple[Run, bool]:
    """Store the input's data-URI images (`storage.inputs`), then charge and insert the
    run in one transaction (`core.creation`); answers (run, replayed).

    With an `Idempotency-Key` header on `request`, a repeat of an earlier create answers
    with that create's run and `replayed` True.
    """
    header = request.headers.get("idempotency-key")
    repeat = None
    if header is not None:
        repeat = creation.Idempotency(
            idempotency.check_key(header),
            idempotency.request_hash(prepared.body, options={"cancel_after_ms": cancel_after_ms}),
        )
    if services.pools is not None:  # fail fast: never charge a run nothing can take
        refusal = services.pools.refusal()
        if refusal is not None:
            raise NoEngineAvailable(refusal)
    # Images in data URIs go to the blob store now: every poll would otherwise carry them.
    stored_input = await inputs.store_images(services.blobs, prepared.validated)
    new = creation.NewRun(
        prepared.model,
        stored_input,
        prepared.cost,
        creation.RunOptions(
            deadline_ms=None if cancel_after_ms is None else now_ms() + cancel_after_ms,
            webhook=prepared.webhook,
            webhook_events=prepared.webhook_events,
            # Only webhooks need it (to sign output URLs in their bodies); it costs a little.
            public_base_url=str(request.base_url) if prepared.webhook else None,
        ),
    )

    def create(connection: Connection) -> tuple[Run, bool]:
        run, replayed = creation.create_or_replay(connection, key, new, repeat)
        if not replayed:
            announce_work(connection)  # PostgreSQL: wakes the workers of other processes
        return run, replayed

    run, replayed = await services.database.write(create)
    if not replayed:
        services.work.notify()  # an idle worker of this process claims it at once
    return run, replayed
