"""Schemathesis over the live server's own OpenAPI document, every operation of every
surface, with a valid key. A failure fails the test:

- no answer is a 5xx;
- every status is one the document declares for the operation;
- every answer's content type, and its body where the document gives a schema, conform;
  errors are declared with their surface's envelope (`http/openapi.py`), so this holds
  each error to its own surface's shape;
- no error message shows a path, a traceback or a library's wording.

Deterministic and bounded: a fixed number of examples per operation, derandomized (the
same requests on every run), no shrinking; about a minute on two cores.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
import schemathesis
from envelopes import error_of
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from support import LiveServer

EXAMPLES_PER_OPERATION = 50
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.mark.slow
def test_the_server_keeps_to_its_document_under_generated_requests(
    start_server: Callable[..., LiveServer],
) -> None:
    server = start_server(workers=0, cancel_wait_seconds=0.5)
    key = server.new_key(balance_usd=10_000.0, rate_limit="1000000/second")
    document = httpx.get(server.base_url + "/openapi.json").json()
    schema = schemathesis.openapi.from_dict(document)
    schema.config.update(base_url=server.base_url)
    # Waiting is tested on its own: with no workers a `Prefer: wait` would wait 60 s.
    headers = {"Authorization": f"Bearer {key}", "Prefer": "respond-async"}
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        # Valid requests and invalid ones (wrong types, missing fields, bad formats).
        cases = operation.as_strategy() | operation.as_strategy(GenerationMode.NEGATIVE)

        @given(case=cases)
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            derandomize=True,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
        )
        def check(case: Any) -> None:
            response = case.call(headers=headers, timeout=30)
            case.validate_response(response, checks=CHECKS)
            if response.status_code >= 400 and case.method != "HEAD":
                error_of(case.path, httpx.Response(response.status_code, content=response.content))

        try:
            check()
        except (Exception, BaseExceptionGroup) as failure:  # this operation's first failure
            failures.append(f"{operation.method.upper()} {operation.path}: {failure}")
    assert operations >= 30, f"only {operations} operations in the document"
    assert failures == [], "\n\n".join(failures)
    with server.client(key) as client:  # and the server is still well
        assert client.get("/readyz").status_code == 200
