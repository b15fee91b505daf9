"""Admin authentication: the admin token in `Authorization: Bearer`, and nothing else.

API keys are never accepted here (they are not the token), and the token is never
accepted by the runs API (it is not a key). The token is compared in constant time
(`AdminToken.matches`) and never logged or echoed: the audit log names the caller by the
token's fingerprint and the client's address.

`admin_token` is the one check: the admin API's router depends on it (so no admin route
can be without it, and the admin document declares the scheme on every operation), and
routes that record an audit entry take its answer as `AdminActor`, the same dependency,
solved once per request.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Request, Security
from fastapi.openapi.models import HTTPBearer as HTTPBearerModel
from fastapi.security.base import SecurityBase

from runbase.core.admin_token import AdminToken
from runbase.core.audit import Actor
from runbase.errors import InvalidAdminToken, MissingAdminToken
from runbase.http.deps import client_ip, get_services


class AdminTokenAuth(SecurityBase):
    """The admin token as a security scheme (HTTP Bearer), answered in the Runbase envelope
    (401 `missing_admin_token`, `invalid_admin_token`), as `deps.ApiKeyAuth` is for keys."""

    def __init__(self) -> None:
        self.scheme_name = "AdminToken"
        self.model = HTTPBearerModel(
            description="The admin token (`runbase admin token`), never an API key.",
        )

    async def __call__(self, request: Request) -> Actor:
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


admin_token = AdminTokenAuth()
AdminActor = Annotated[Actor, Security(admin_token)]
"""The checked caller of an admin route, for its audit entry."""
