"""`POST /providers/{provider}/callbacks/{run_id}`: where providers call back (a hint).

Active only when `RUNBASE_PUBLIC_URL` is set (the URL is given to providers only then).
The URL carries runbase's signature (`dispatch.callbacks`), checked before anything else;
then the provider checks its own (`Provider.read_callback`) and names the task. A callback
for a run this process carries wakes its poll loop, which reads the task back through the
provider's API: what the callback's body says is never believed. Anything else is answered
202 and dropped; polling goes on either way.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from runbase.errors import InvalidCallbackSignature, RequestTooLarge, RouteNotFound
from runbase.http.deps import get_services
from runbase.providers import CallbackRequest

router = APIRouter(tags=["operations"])

MAX_CALLBACK_BYTES = 1024 * 1024


@router.post("/providers/{provider}/callbacks/{run_id}", include_in_schema=False)
async def receive_callback(provider: str, run_id: str, request: Request) -> JSONResponse:
    services = get_services(request)
    pools = services.pools
    gateway = pools.gateway if pools is not None else None
    if pools is None or gateway is None or not pools.signer.is_active:
        raise RouteNotFound()
    if not pools.signer.verify(provider, run_id, request.query_params.get("sig", "")):
        raise InvalidCallbackSignature()
    target = gateway.providers.get(provider)
    if target is None:
        raise RouteNotFound()
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_CALLBACK_BYTES:
            raise RequestTooLarge("a callback body may be at most 1 MiB")
    headers = {name.lower(): value for name, value in request.headers.items()}
    task_id = await target.read_callback(CallbackRequest(headers=headers, body=body))
    woken = task_id is not None and gateway.wake_task(provider, run_id, task_id)
    return JSONResponse({"received": True, "woken": woken}, status_code=200 if woken else 202)
