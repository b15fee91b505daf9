"""API keys: issuing, hashing, looking up, and the per-key IP allowlist.

A key is shown once, when it is created. The database keeps only its SHA-256 hash (keys
carry 238 bits of randomness, so a fast hash is enough: there is nothing to brute-force)
and a short prefix to recognise it by in listings.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Connection, Row, Table, func, insert, select, update

from runbase.core.clock import new_id, now_ms
from runbase.core.listing import Owner
from runbase.errors import InvalidApiKey, IpNotAllowed
from runbase.storage.tables import ApiKeyRow, RunRow

MAX_ALLOWED_IPS = 10
_KEYS = cast(Table, ApiKeyRow.__table__)
_ALPHABET = string.ascii_letters + string.digits
_KEY_LENGTH = 40
TEST_KEY_PREFIX = "sk-test-"


def generate_secret(*, is_test: bool = False) -> str:
    """`sk-` (`sk-test-` for a test key) followed by 40 random base62 characters."""
    prefix = TEST_KEY_PREFIX if is_test else "sk-"
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(_KEY_LENGTH))


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def normalize_allowlist(entries: Sequence[str]) -> list[str]:
    """Check and canonicalise IP addresses and CIDR blocks (IPv4 and IPv6)."""
    if len(entries) > MAX_ALLOWED_IPS:
        raise ValueError(f"at most {MAX_ALLOWED_IPS} allowed IPs per key, got {len(entries)}")
    networks = []
    for entry in entries:
        try:
            networks.append(str(ipaddress.ip_network(entry.strip(), strict=False)))
        except ValueError as exc:
            raise ValueError(f"{entry!r} is not an IP address or CIDR block") from exc
    return networks


def is_ip_allowed(allowlist: Sequence[str], client_ip: str | None) -> bool:
    """An empty allowlist allows everyone; otherwise the address must be in a listed block."""
    if not allowlist:
        return True
    if client_ip is None:
        return False
    try:
        address = ipaddress.ip_address(client_ip)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in ipaddress.ip_network(entry) for entry in allowlist)


def create_key(
    connection: Connection,
    *,
    account_id: str,
    name: str = "default",
    spend_limit_cents: int | None = None,
    allowed_ips: Sequence[str] = (),
    daily_run_quota: int | None = None,
    rate_limit: str | None = None,
    is_test: bool = False,
) -> tuple[Row[Any], str]:
    """Insert a new key; returns the row and the secret, which is never stored.

    A test key's runs use the test engine and the account's test balance, never money.
    """
    secret = generate_secret(is_test=is_test)
    key_id = new_id("key")
    values = dict(
        id=key_id,
        account_id=account_id,
        name=name,
        key_hash=hash_secret(secret),
        prefix=secret[:14] if is_test else secret[:10],
        is_enabled=True,
        spend_limit_cents=spend_limit_cents,
        spent_micros=0,
        daily_run_quota=daily_run_quota,
        allowed_ips=normalize_allowlist(allowed_ips),
        rate_limit=rate_limit,
        created_ms=now_ms(),
        is_test=is_test,
    )
    connection.execute(insert(_KEYS).values(**values))
    return connection.execute(select(_KEYS).where(_KEYS.c.id == key_id)).one(), secret


@dataclass(frozen=True)
class KeyRecord:
    """What a request needs to know about its key; small enough to cache."""

    id: str
    account_id: str
    is_enabled: bool
    allowed_ips: tuple[str, ...]
    rate_limit: str | None
    is_test: bool = False

    @property
    def owner(self) -> Owner:
        """The runs this key sees: its account's, in its mode (test or live)."""
        return Owner(self.account_id, self.is_test)


def find_key(connection: Connection, secret: str) -> KeyRecord | None:
    """The key with this secret, enabled or not; None if there is none."""
    digest = hash_secret(secret)
    table = _KEYS
    row = connection.execute(
        select(
            table.c.id,
            table.c.account_id,
            table.c.key_hash,
            table.c.is_enabled,
            table.c.allowed_ips,
            table.c.rate_limit,
            table.c.is_test,
        ).where(table.c.key_hash == digest)
    ).first()
    # The lookup is by hash, so timing reveals nothing about the secret; the explicit
    # constant-time comparison guards against a collation or index quirk matching loosely.
    if row is None or not hmac.compare_digest(row.key_hash, digest):
        return None
    return KeyRecord(
        row.id,
        row.account_id,
        bool(row.is_enabled),
        tuple(row.allowed_ips or ()),
        row.rate_limit,
        bool(row.is_test),
    )


def check_key(key: KeyRecord | None, client_ip: str | None) -> KeyRecord:
    """Refuse a missing or disabled key, and a caller outside the key's allowlist."""
    if key is None or not key.is_enabled:
        raise InvalidApiKey()
    if not is_ip_allowed(key.allowed_ips, client_ip):
        raise IpNotAllowed(f"requests from {client_ip} are not allowed for this API key")
    return key


def get_key(connection: Connection, key_id: str) -> Row[Any]:
    return connection.execute(select(_KEYS).where(_KEYS.c.id == key_id)).one()


def count_recent_runs(connection: Connection, key_id: str, *, since_ms: int) -> int:
    """Runs this key created since `since_ms` (what the daily quota counts)."""
    runs = cast(Table, RunRow.__table__)
    return int(
        connection.execute(
            select(func.count())
            .select_from(runs)
            .where(runs.c.key_id == key_id, runs.c.created_ms > since_ms)
        ).scalar_one()
    )


def set_key_enabled(connection: Connection, key_id: str, *, is_enabled: bool) -> bool:
    result = connection.execute(
        update(_KEYS).where(_KEYS.c.id == key_id).values(is_enabled=is_enabled)
    )
    return bool(result.rowcount)
