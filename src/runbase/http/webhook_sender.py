"""The webhook sender: delivers stored webhook messages, off every request's path.

Every half second it takes the messages that are due (`core.webhooks`), posts each (in a
thread, `dispatch.webhook_post`) and records the outcome. An answer of 2xx delivers it; no
answer, 429 or 5xx retries it after 5 s, 10 s, 20 s... (at most an hour apart) until 24 h
after its event; anything else gives it up. Messages are rows, so a restart loses none:
a message whose attempt was cut short is retried when its lease runs out.

It lives in the HTTP layer because a message's body is the run object exactly as the API
shows it, signed output URLs included.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any, Final

from sqlalchemy import Row, select

from runbase.core import webhooks
from runbase.core.clock import now_ms
from runbase.core.run_view import run_from_snapshot
from runbase.dispatch.webhook_post import PostResult, WebhookRefused, post_webhook
from runbase.http.deps import Services
from runbase.http.run_object import run_read
from runbase.storage.tables import WebhookDeliveryRow

logger = logging.getLogger(__name__)

POLL_SECONDS: Final = 0.5
BATCH: Final = 16
MAX_RETRY_SECONDS: Final = 3600.0
_DELIVERIES = WebhookDeliveryRow.__table__
_NEXT_DUE = (
    select(_DELIVERIES.c.next_attempt_ms)
    .where(_DELIVERIES.c.status == webhooks.DeliveryStatus.PENDING.value)
    .order_by(_DELIVERIES.c.next_attempt_ms)
    .limit(1)
)


async def deliver_webhooks_forever(services: Services, stopping: asyncio.Event) -> None:
    """Deliver due messages until `stopping` is set."""
    while not stopping.is_set():
        try:
            await deliver_due(services)
        except Exception:
            logger.exception("delivering webhooks failed; will try again")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), POLL_SECONDS)


async def deliver_due(services: Services) -> int:
    """Attempt every message that is due now; returns how many were attempted."""
    next_due = await services.database.read(
        lambda connection: connection.execute(_NEXT_DUE).scalar()
    )
    if next_due is None or next_due > now_ms():
        return 0  # the common case costs one indexed read, no write
    lease_ms = int(services.settings.webhook_timeout_seconds * 1000) + 30_000
    taken = await services.database.write(
        lambda connection: webhooks.take_due_deliveries(connection, lease_ms=lease_ms, limit=BATCH)
    )
    by_run: dict[str, list[Row[Any]]] = {}
    for message in taken:
        by_run.setdefault(message.run_id, []).append(message)
    # A run's messages go one after another, oldest first (a receiver sees `start` before
    # `completed`); different runs' messages go in parallel.
    await asyncio.gather(*(_attempt_in_order(services, batch) for batch in by_run.values()))
    return len(taken)


async def _attempt_in_order(services: Services, messages: list[Row[Any]]) -> None:
    for message in sorted(messages, key=lambda message: (message.created_ms, message.id)):
        try:
            await _attempt(services, message)
        except Exception as exc:
            logger.exception("webhook %s could not be attempted", message.id)
            await _record_broken(services, message, exc)


async def _record_broken(services: Services, message: Row[Any], exc: Exception) -> None:
    """An attempt that broke before sending counts as a failed send, so that the 24-hour
    limit still ends it."""
    error = f"{type(exc).__name__}: {exc}"
    retry_at = _retry_at(services, message, PostResult(None, error))
    await services.database.write(
        lambda connection: webhooks.record_attempt(
            connection, message.id, delivered=False, retry_at_ms=retry_at, error=error
        )
    )


def _render_run(services: Services, message: Row[Any]) -> str:
    """The run object as of the message's event (queuePosition: never pending then)."""
    run = run_from_snapshot(message.snapshot)
    base_url = services.settings.public_url or run.public_base_url or "http://localhost/"
    return json.dumps(run_read(services, run, base_url), separators=(",", ":"))


async def _attempt(services: Services, message: Row[Any]) -> None:
    settings = services.settings
    payload = message.payload
    if payload is None:
        rendered = _render_run(services, message)
        payload = await services.database.write(
            lambda connection: webhooks.freeze_payload(connection, message.id, rendered)
        )
    is_test = bool(message.snapshot.get("is_test"))
    secret = await services.database.write(
        lambda connection: webhooks.account_secret(connection, message.account_id, is_test=is_test)
    )
    body = payload.encode()
    timestamp = int(time.time())
    headers = {
        "content-type": "application/json",
        "user-agent": "runbase-webhooks/1",
        "webhook-id": message.id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": webhooks.sign(secret, message.id, timestamp, body),
    }
    try:
        result = await asyncio.to_thread(
            post_webhook,
            message.url,
            body,
            headers,
            timeout_s=settings.webhook_timeout_seconds,
            allow_private_hosts=settings.allow_private_webhook_hosts,
        )
    except WebhookRefused as exc:
        result = PostResult(None, f"refused: {exc}")
    except Exception as exc:  # a URL our parser rejects: nothing to retry
        result = PostResult(None, f"refused: {type(exc).__name__}: {exc}")
    delivered = result.status is not None and 200 <= result.status < 300
    retry_at = None if delivered else _retry_at(services, message, result)
    error = result.error or (None if delivered else f"HTTP {result.status}")
    await services.database.write(
        lambda connection: webhooks.record_attempt(
            connection, message.id, delivered=delivered, retry_at_ms=retry_at, error=error
        )
    )
    log = logger.info if delivered else logger.warning
    log(
        "webhook %s %s (attempt %d): %s",
        message.event,
        "delivered" if delivered else "not delivered",
        message.attempts,
        error or result.status,
        extra={"run_id": message.run_id, "webhook_id": message.id},
    )


def _retry_at(services: Services, message: Row[Any], result: PostResult) -> int | None:
    """When to try again: after no answer, 429 or 5xx, with doubling waits; else never."""
    is_refused = result.error is not None and result.error.startswith("refused")
    retryable = (result.status is None and not is_refused) or result.status == 429
    retryable = retryable or (result.status is not None and result.status >= 500)
    if not retryable:
        return None
    settings = services.settings
    delay = min(settings.webhook_retry_seconds * 2 ** (message.attempts - 1), MAX_RETRY_SECONDS)
    retry_at = now_ms() + int(delay * 1000)
    if retry_at > message.created_ms + settings.webhook_max_age_seconds * 1000:
        return None
    return retry_at
