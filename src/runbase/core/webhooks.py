"""Webhooks: where they may point, the account's signing secret, and stored deliveries.

Deliveries follow the Standard Webhooks scheme (as Replicate and Svix do): every message
has an id (`webhook-id`, the same on every retry, so receivers can drop duplicates), a
unix-seconds `webhook-timestamp`, and `webhook-signature: v1,<base64 HMAC-SHA256>` over
`{id}.{timestamp}.{body}`, keyed with the account's `whsec_` secret (base64 after the
prefix); test runs' messages with the account's test secret, a different one (test and
live apart, as in Stripe). A delivery is a row, queued in the transaction of the change it
reports and sent later by `http.webhook_sender`, so it survives restarts and never slows a
request.

    pending ──2xx──> delivered
       │ └──timeout, 429, 5xx──> pending (retried later, doubling the wait)
       └──other answer, or 24 h passed──> failed
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any, Final, cast
from urllib.parse import urlsplit

from sqlalchemy import Connection, Row, Table, insert, select, update

from runbase.core.clock import new_id, now_ms
from runbase.errors import InvalidInput
from runbase.outbound import refusal_reason
from runbase.storage.tables import AccountRow, WebhookDeliveryRow

_ACCOUNTS = cast(Table, AccountRow.__table__)
_DELIVERIES = cast(Table, WebhookDeliveryRow.__table__)
MAX_URL_CHARS: Final = 2000


class WebhookEvent(StrEnum):
    START = "start"  # the run started processing
    PROGRESS = "progress"  # the engine reported progress (at most about once a second)
    COMPLETED = "completed"  # the run reached a final status


# Progress is opt-in: a video run reports it every second, one HTTP request each.
DEFAULT_EVENTS: Final = (WebhookEvent.START.value, WebhookEvent.COMPLETED.value)


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"


def check_webhook(
    url: object,
    events: object,
    *,
    http_hosts: Sequence[str] = (),
    allow_private_hosts: bool = False,
) -> tuple[str, list[str] | None]:
    """Check the `webhook` and `webhookEventsFilter` of a create; raise `InvalidInput`.

    Host names are checked again when each delivery connects (they may resolve anywhere);
    here an IP literal is refused at once, so that a mistake shows at creation.
    """
    if not isinstance(url, str) or not url.strip():
        raise InvalidInput("webhook must be an https:// URL string")
    if len(url) > MAX_URL_CHARS:
        raise InvalidInput(f"webhook is longer than {MAX_URL_CHARS} characters")
    try:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        _ = parts.port  # a port that is not a number raises here
    except ValueError:
        raise InvalidInput("webhook is not a valid URL") from None
    if parts.scheme not in ("https", "http") or not host:
        raise InvalidInput("webhook must be an absolute https:// URL")
    if parts.username is not None or parts.password is not None:
        raise InvalidInput("webhook must not carry a user name or password")
    allowed_http = {name.strip("[]").lower() for name in http_hosts}
    if parts.scheme == "http" and host not in allowed_http:
        raise InvalidInput(
            "webhook must use https://; plain http:// is allowed only to hosts the operator "
            "lists in RUNBASE_WEBHOOK_HTTP_HOSTS"
        )
    reason = None if allow_private_hosts else address_refusal(host)
    if reason is not None:
        raise InvalidInput(f"webhook host {host} is {reason}; webhooks go to public addresses")
    return url, _check_events(events)


def address_refusal(host: str) -> str | None:
    """Why a webhook may not go to this IP literal ("a loopback address"...); None if it may
    (or if `host` is a name, to be checked when it resolves)."""
    try:
        address = ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None
    return refusal_reason(address)


def _check_events(events: object) -> list[str] | None:
    if events is None:
        return None
    allowed = [event.value for event in WebhookEvent]
    if (
        not isinstance(events, list)
        or not events
        or not all(isinstance(event, str) and event in allowed for event in events)
    ):
        raise InvalidInput(
            "webhookEventsFilter must be a non-empty array of "
            + ", ".join(f'"{event}"' for event in allowed)
        )
    return sorted(set(events), key=allowed.index)


# ---- the account's secret and signatures ----------------------------------------------


def generate_secret() -> str:
    """`whsec_` + 32 random bytes in base64, the Standard Webhooks form."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def account_secret(connection: Connection, account_id: str, *, is_test: bool = False) -> str:
    """The account's signing secret for live runs, or for test runs with `is_test`; made
    on first use (a guarded update: one wins)."""
    column = _ACCOUNTS.c.test_webhook_secret if is_test else _ACCOUNTS.c.webhook_secret
    connection.execute(
        update(_ACCOUNTS)
        .where(_ACCOUNTS.c.id == account_id, column.is_(None))
        .values({column: generate_secret()})
    )
    secret = connection.execute(select(column).where(_ACCOUNTS.c.id == account_id)).scalar_one()
    return str(secret)


def sign(secret: str, message_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header value for one message."""
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{message_id}.{timestamp}.".encode() + body
    digest = hmac.new(key, signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(
    secret: str, headers: Mapping[str, str], body: bytes, *, tolerance_s: int = 300, now: int
) -> str | None:
    """The `webhook-id` of a message signed with `secret` (one `v1,` signature of the
    header's list matches) and stamped within `tolerance_s` of `now`; None otherwise.
    How runbase checks the Standard Webhooks it receives (Replicate's, another runbase's)."""
    message_id = headers.get("webhook-id", "")
    stamp = headers.get("webhook-timestamp", "")
    if not message_id or not stamp.isdigit() or abs(now - int(stamp)) > tolerance_s:
        return None
    try:
        expected = sign(secret, message_id, int(stamp), body)
    except ValueError:  # a secret that is not base64
        return None
    for candidate in headers.get("webhook-signature", "").split():
        if hmac.compare_digest(candidate.encode(), expected.encode()):
            return message_id
    return None


# ---- deliveries -------------------------------------------------------------------------


def queue_delivery(
    connection: Connection,
    *,
    account_id: str,
    run_id: str,
    url: str,
    event: str,
    snapshot: Mapping[str, Any],
) -> str:
    """Store one message to send; the sender picks it up (at once, or after a restart).

    `snapshot` is the run's row as of the event (JSON-ready values).
    """
    now = now_ms()
    message_id = new_id("msg")
    connection.execute(
        insert(_DELIVERIES).values(
            id=message_id,
            account_id=account_id,
            run_id=run_id,
            event=event,
            url=url,
            snapshot=dict(snapshot),
            payload=None,
            status=DeliveryStatus.PENDING.value,
            attempts=0,
            next_attempt_ms=now,
            last_error=None,
            created_ms=now,
            completed_ms=None,
        )
    )
    return message_id


def take_due_deliveries(connection: Connection, *, lease_ms: int, limit: int) -> list[Row[Any]]:
    """Pending deliveries whose time has come, each leased for `lease_ms`.

    The lease (pushing `next_attempt_ms` ahead) keeps a second sender, or this one on its
    next pass, from sending the same message while an attempt is under way.
    """
    now = now_ms()
    due = connection.execute(
        select(_DELIVERIES.c.id)
        .where(
            _DELIVERIES.c.status == DeliveryStatus.PENDING.value,
            _DELIVERIES.c.next_attempt_ms <= now,
        )
        .order_by(_DELIVERIES.c.next_attempt_ms)
        .limit(limit)
    ).scalars()
    taken = []
    for message_id in list(due):
        row = connection.execute(
            update(_DELIVERIES)
            .where(
                _DELIVERIES.c.id == message_id,
                _DELIVERIES.c.status == DeliveryStatus.PENDING.value,
                _DELIVERIES.c.next_attempt_ms <= now,
            )
            .values(next_attempt_ms=now + lease_ms, attempts=_DELIVERIES.c.attempts + 1)
            .returning(*_DELIVERIES.c)
        ).first()
        if row is not None:
            taken.append(row)
    return taken


def freeze_payload(connection: Connection, message_id: str, payload: str) -> str:
    """Keep the first body built for a message, so that every retry sends the same bytes."""
    connection.execute(
        update(_DELIVERIES)
        .where(_DELIVERIES.c.id == message_id, _DELIVERIES.c.payload.is_(None))
        .values(payload=payload)
    )
    stored = connection.execute(
        select(_DELIVERIES.c.payload).where(_DELIVERIES.c.id == message_id)
    ).scalar_one()
    return str(stored)


def record_attempt(
    connection: Connection,
    message_id: str,
    *,
    delivered: bool,
    retry_at_ms: int | None,
    error: str | None = None,
) -> None:
    """After an attempt: delivered, to be retried at `retry_at_ms`, or (neither) failed."""
    values: dict[str, Any] = {"last_error": (error or "")[:500] or None}
    if delivered:
        values.update(status=DeliveryStatus.DELIVERED.value, completed_ms=now_ms())
    elif retry_at_ms is not None:
        values.update(next_attempt_ms=retry_at_ms)
    else:
        values.update(status=DeliveryStatus.FAILED.value, completed_ms=now_ms())
    connection.execute(
        update(_DELIVERIES)
        .where(
            _DELIVERIES.c.id == message_id,
            _DELIVERIES.c.status == DeliveryStatus.PENDING.value,
        )
        .values(**values)
    )
