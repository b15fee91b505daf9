"""Schemathesis over the live server's own OpenAPI document: no input makes it answer 500.

Every operation gets up to 25 generated requests (the schema's examples among them), sent
with a valid key, bounded to well under a minute in all. `/v1/...` duplicates `/api/v1/...`
handler for handler, so only the `/api/v1` copy is fuzzed.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings

from support import LiveServer

EXAMPLES_PER_OPERATION = 25
TIME_BUDGET_SECONDS = 45.0


@pytest.mark.slow
def test_no_generated_request_gets_a_server_error(
    start_server: Callable[..., LiveServer],
) -> None:
    server = start_server(cancel_wait_seconds=0.5)
    key = server.new_key(balance_usd=10_000.0, rate_limit="1000000/second")
    document = httpx.get(server.base_url + "/openapi.json").json()
    schema = schemathesis.openapi.from_dict(document)
    schema.config.update(base_url=server.base_url)
    # Waiting is tested on its own; here it would only make the fuzzing slow.
    headers = {"Authorization": f"Bearer {key}", "Prefer": "respond-async"}
    deadline = time.monotonic() + TIME_BUDGET_SECONDS
    failures: list[str] = []
    fuzzed = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        if operation.path.startswith("/v1/") or time.monotonic() > deadline:
            continue
        fuzzed += 1

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            if time.monotonic() > deadline:
                return
            response = case.call(headers=headers, timeout=10)
            if response.status_code >= 500:
                failures.append(
                    f"{case.method} {case.formatted_path} -> {response.status_code}: "
                    f"{response.text[:200]}"
                )

        check()
    assert fuzzed >= 12, f"only {fuzzed} operations in the document"
    assert failures == [], "\n".join(failures)
    with server.client(key) as client:  # and the server is still well
        assert client.get("/readyz").status_code == 200
