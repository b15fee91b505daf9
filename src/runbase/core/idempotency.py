"""`Idempotency-Key`: a create sent twice creates (and charges) one run.

The key's row is inserted first in the create's own transaction, so the database's unique
(account, key) constraint decides between concurrent requests: the first inserts it and
goes on to charge and insert its run; every other one finds the row and answers with that
run (a replay), or with 409 when its body differs. If the first request is refused (402,
403...) its transaction rolls back, the row with it, and the key is free again.

Keys are kept 24 hours per account and mode (a test key's never meet a live key's); an
older row is replaced by the next use of its key.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any, Final, cast

from sqlalchemy import Connection, Row, Table, delete, insert, select
from sqlalchemy.exc import IntegrityError

from runbase.core.clock import now_ms
from runbase.core.listing import Owner
from runbase.errors import IdempotencyKeyInUse, IdempotencyKeyReused, InvalidRequest
from runbase.storage.tables import IdempotencyKeyRow

KEEP_MS: Final = 24 * 3600 * 1000
MAX_KEY_CHARS: Final = 255
_KEYS = cast(Table, IdempotencyKeyRow.__table__)


def check_key(header: str) -> str:
    """The header's key, if it is 1 to 255 printable ASCII characters."""
    key = header.strip()
    if not key or len(key) > MAX_KEY_CHARS or not all(" " <= char <= "~" for char in key):
        raise InvalidRequest(
            f"Idempotency-Key must be 1 to {MAX_KEY_CHARS} printable ASCII characters"
        )
    return key


def request_hash(body: Mapping[str, Any], *, options: Mapping[str, Any]) -> str:
    """What makes two creates "the same": the JSON body (key order and spacing aside) and
    the headers that change the run (Cancel-After)."""
    canonical = json.dumps(
        {"body": body, "options": options}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def claim_key(
    connection: Connection, *, owner: Owner, key: str, request_hash: str, run_id: str
) -> Row[Any] | None:
    """Take the key for `run_id`: None when taken (create the run now), else the row of
    the request that took it first (answer with its run).

    Raises `IdempotencyKeyReused` when that request's body was different.
    """
    now = now_ms()
    mine = (
        _KEYS.c.account_id == owner.account_id,
        _KEYS.c.is_test == owner.is_test,
        _KEYS.c.key == key,
    )
    connection.execute(delete(_KEYS).where(*mine, _KEYS.c.created_ms < now - KEEP_MS))
    try:
        with connection.begin_nested():  # a failed insert must not end the transaction
            connection.execute(
                insert(_KEYS).values(
                    account_id=owner.account_id,
                    is_test=owner.is_test,
                    key=key,
                    request_hash=request_hash,
                    run_id=run_id,
                    created_ms=now,
                )
            )
        return None
    except IntegrityError:
        pass
    existing = connection.execute(select(_KEYS).where(*mine)).first()
    if existing is None:
        # The other request's transaction holds the key but is not visible yet.
        raise IdempotencyKeyInUse()
    if existing.request_hash != request_hash:
        raise IdempotencyKeyReused()
    return existing


def forget_old_keys(connection: Connection) -> int:
    """Delete keys older than 24 hours; returns how many."""
    result = connection.execute(delete(_KEYS).where(_KEYS.c.created_ms < now_ms() - KEEP_MS))
    return int(result.rowcount)
