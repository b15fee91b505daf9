"""Admin authentication: the admin token in `Authorization: Bearer`, and nothing else.

API keys are never accepted here (they are not the token), and the token is never
accepted by the runs API (it is not a key). The token is compared in constant time
(`AdminToken.matches`) and never logged or echoed: the audit log names the caller by the
token's fingerprint and the client's address.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from runbase.core.admin_token import AdminToken
from runbase.core.audit import Actor
from runbase.errors import InvalidAdminToken, MissingAdminToken
from runbase.http.deps import client_ip, get_services


async def require_admin(request: Request) -> Actor:
    """The caller as the audit log names it, once its token has been checked."""
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    given = given.strip()
    if scheme.lower() != "bearer" or not given:
        raise MissingAdminToken()
    token: AdminToken = request.app.state.admin_token
    if not token.matches(given):
        raise InvalidAdminToken()
    services = get_services(request)
    address = client_ip(request, services.settings.trusted_proxies)
    return Actor(f"admin-token:{token.fingerprint}", address)


AdminActor = Annotated[Actor, Depends(require_admin)]
