"""Callback URLs for providers: runbase's own signature on every one.

A provider that can call back (ModelArk's `callback_url`, fal's and Replicate's webhooks)
is given `<public_url>/providers/<provider>/callbacks/<run id>?sig=<HMAC>`. The route
(`http/routes/provider_callbacks.py`) refuses a callback whose signature is not runbase's
before it reads anything else, so a stranger cannot make the gateway poll a provider at
will; an accepted one is still only a hint (the task is read back through the provider's
API). The key is derived from the URL-signing secret of the data directory.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import quote


class CallbackSigner:
    def __init__(self, secret: bytes, public_url: str | None) -> None:
        self._key = hmac.new(secret, b"runbase provider callbacks", hashlib.sha256).digest()
        self._base = public_url.rstrip("/") if public_url else None

    @property
    def is_active(self) -> bool:
        """Callbacks need a URL that providers can reach: `RUNBASE_PUBLIC_URL`."""
        return self._base is not None

    def url(self, provider: str, run_id: str) -> str | None:
        if self._base is None:
            return None
        path = f"/providers/{quote(provider, safe='')}/callbacks/{quote(run_id, safe='')}"
        return f"{self._base}{path}?sig={self._sign(provider, run_id)}"

    def verify(self, provider: str, run_id: str, signature: str) -> bool:
        expected = self._sign(provider, run_id).encode()
        return hmac.compare_digest(expected, signature.encode("utf-8", "replace"))

    def _sign(self, provider: str, run_id: str) -> str:
        message = f"{provider}\n{run_id}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()
