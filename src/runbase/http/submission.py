"""Creating a run, for every surface that creates one: the Runbase routes and the
ModelArk- and OpenAI-compatible ones. Each surface parses its own request into a Runbase
create body (`{"model", "input", ...}`), then calls `prepare` and `submit`; the checks, the
price and the one transaction that charges and inserts the run are the same for all.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Final

from sqlalchemy import Connection, Row
from starlette.requests import Request

from runbase.core import idempotency, listing, runs
from runbase.core.catalog import find_model
from runbase.core.clock import new_id, now_ms
from runbase.core.keys import KeyRecord
from runbase.core.seedance import MAX_DATA_URI_CHARS
from runbase.core.webhooks import check_webhook
from runbase.dispatch.wakeup import announce_work
from runbase.errors import (
    IdempotencyKeyInUse,
    MissingInput,
    MissingModel,
    NoEngineAvailable,
    RequestTooLarge,
    RunNotFound,
)
from runbase.http.deps import Services
from runbase.parsing import declared_length, parse_json
from runbase.storage import inputs
from runbase.storage.tables import RunRow


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
) -> tuple[RunRow | Row[Any], bool]:
    """Store the input's data-URI images (`storage.inputs`), then charge and insert the
    run in one transaction; answers (run, replayed).

    With an `Idempotency-Key` header on `request`, a repeat of an earlier create answers
    with that create's run and `replayed` True.
    """
    idempotency_key = request.headers.get("idempotency-key")
    request_hash = ""
    if idempotency_key is not None:
        idempotency_key = idempotency.check_key(idempotency_key)
        request_hash = idempotency.request_hash(
            prepared.body, options={"cancel_after_ms": cancel_after_ms}
        )
    if services.pools is not None:  # fail fast: never charge a run nothing can take
        refusal = services.pools.refusal()
        if refusal is not None:
            raise NoEngineAvailable(refusal)
    # Images in data URIs go to the blob store now: every poll would otherwise carry them.
    stored_input = await inputs.store_images(services.blobs, prepared.validated)
    options = runs.RunOptions(
        deadline_ms=None if cancel_after_ms is None else now_ms() + cancel_after_ms,
        webhook=prepared.webhook,
        webhook_events=prepared.webhook_events,
        # Only webhooks need it (to sign output URLs in their bodies); it costs a little.
        public_base_url=str(request.base_url) if prepared.webhook else None,
    )
    run, replayed = await services.database.write(
        lambda connection: _create_or_replay(
            connection, key, prepared, stored_input, options, idempotency_key, request_hash
        )
    )
    if not replayed:
        services.work.notify()  # an idle worker of this process claims it at once
    return run, replayed


def _create_or_replay(
    connection: Connection,
    key: KeyRecord,
    prepared: CheckedCreate,
    stored_input: dict[str, Any],
    options: runs.RunOptions,
    idempotency_key: str | None,
    request_hash: str,
) -> tuple[RunRow | Row[Any], bool]:
    """One transaction: the run and its charge, or the run an earlier request created."""
    run_id = new_id("run")
    if idempotency_key is not None:
        first = idempotency.claim_key(
            connection,
            owner=key.owner,
            key=idempotency_key,
            request_hash=request_hash,
            run_id=run_id,
        )
        if first is not None:
            try:
                return listing.get_run(connection, first.run_id, owner=key.owner), True
            except RunNotFound:
                raise IdempotencyKeyInUse() from None
    run = runs.create_run(
        connection,
        key=key,
        model=prepared.model,
        validated_input=stored_input,
        cost=prepared.cost,
        run_id=run_id,
        options=options,
    )
    announce_work(connection)  # PostgreSQL: wakes the workers of other processes
    return run, False
