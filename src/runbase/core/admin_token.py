"""The admin token: what the admin API and console accept, and nothing else does.

`RUNBASE_ADMIN_TOKEN` when it is set; otherwise one generated into the data directory on
first start (`admin-token`, readable by its owner only) and printed once, beside the first
API key. It is compared in constant time and never logged; the audit log names it only by
a short fingerprint of its hash.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import string
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

TOKEN_FILE = "admin-token"
_ALPHABET = string.ascii_letters + string.digits
_PREFIX = "rbadm_"


@dataclass(frozen=True)
class AdminToken:
    value: str
    source: Literal["environment", "data directory"]
    created: bool = False
    """True when this call generated it (so it is shown, once)."""

    def __repr__(self) -> str:  # never print the value by accident
        return f"AdminToken(source={self.source!r}, fingerprint={self.fingerprint!r})"

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(self.value.encode()).hexdigest()[:8]

    def matches(self, candidate: str) -> bool:
        """Constant time: both sides are hashed first, so even the length is not told."""
        given = hashlib.sha256(candidate.encode("utf-8", "replace")).digest()
        return hmac.compare_digest(given, hashlib.sha256(self.value.encode()).digest())


def load_admin_token(configured: str | None, data_dir: Path) -> AdminToken:
    """The configured token, else the data directory's (generated the first time)."""
    if configured:
        return AdminToken(configured, "environment")
    path = data_dir / TOKEN_FILE
    if path.exists():
        return AdminToken(path.read_text().strip(), "data directory")
    data_dir.mkdir(parents=True, exist_ok=True)
    token = _PREFIX + "".join(secrets.choice(_ALPHABET) for _ in range(43))
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process made it first: theirs is the token
        return AdminToken(path.read_text().strip(), "data directory")
    with os.fdopen(descriptor, "w") as file:
        file.write(token + "\n")
    return AdminToken(token, "data directory", created=True)
