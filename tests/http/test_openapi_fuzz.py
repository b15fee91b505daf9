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

from support import SEEDANCE, LiveServer

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


def _declared_models(document: dict[str, Any]) -> set[tuple[str, str]]:
    """(METHOD, path) of every operation whose 200 answer declares a JSON schema (none for
    OpenAI's and ModelArk's objects: tests/http/compat reads those with their SDKs)."""
    return {
        (method.upper(), path)
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
        if operation["responses"]
        .get("200", {})
        .get("content", {})
        .get("application/json", {})
        .get("schema")
    }


def test_every_declared_answer_model_holds_on_real_runs(
    start_server: Callable[..., LiveServer],
) -> None:
    """The fuzzer's ids are never a run's, so its 200s miss most models: here each operation
    whose 200 declares a model answers 200 on real objects (pending, processing, succeeded,
    failed, canceled runs; both prefixes, the hot routes among them), and each answer is held
    to the declared model by schemathesis' response conformance."""
    server = start_server(
        engines=["engine_fixtures:SlowEngine"], test_engine="engine_fixtures:QuickEngine"
    )
    fast = "1000/second"
    live, test = server.new_key(rate_limit=fast), server.new_key(is_test=True, rate_limit=fast)
    document = httpx.get(server.base_url + "/openapi.json").json()
    schema = schemathesis.openapi.from_dict(document)
    held: set[tuple[str, str]] = set()

    def check(
        key: str, method: str, path: str, *, json: Any = None, **path_parameters: str
    ) -> dict[str, Any]:
        operation = schema[path][method]
        case = operation.Case(path_parameters=path_parameters)
        if json is not None:
            case = operation.Case(path_parameters=path_parameters, body=json)
        url = server.base_url + case.formatted_path
        headers = {"Authorization": f"Bearer {key}"}
        response = httpx.request(method, url, json=json, headers=headers, timeout=30)
        assert response.status_code == 200, (method, path, response.text)
        case.validate_response(response, checks=CHECKS)
        held.add((method, path))
        answer: dict[str, Any] = response.json()
        return answer

    small = {"resolution": "480p", "generate_audio": False}
    body = {"model": SEEDANCE, "input": {"prompt": "A lamp on a desk", **small}}
    failing = {"model": SEEDANCE, "input": {"prompt": "A lamp [fail:generation_failed]", **small}}
    made = check(test, "POST", "/api/v1/runs", json=body)["id"]
    failed = check(test, "POST", "/v1/runs", json=failing)["id"]
    assert server.wait_for_run(test, made)["status"] == "succeeded"
    assert server.wait_for_run(test, failed)["status"] == "failed"
    for prefix in ("/api/v1", "/v1"):
        runs, one_run = f"{prefix}/runs", f"{prefix}/runs/{{run_id}}"
        slow = check(live, "POST", runs, json=body)["id"]
        check(live, "GET", one_run, run_id=slow)  # pending or processing
        assert check(live, "POST", one_run + "/cancel", run_id=slow)["status"] == "canceled"
        check(live, "GET", one_run, run_id=slow)
        assert check(test, "GET", one_run, run_id=made)["output"]["urls"]
        assert check(test, "GET", one_run, run_id=failed)["error"]["code"]
        assert len(check(test, "GET", runs)["data"]) == 2
        check(live, "POST", f"{runs}/estimate", json=body)
        check(live, "GET", f"{prefix}/account")
        check(test, "GET", f"{prefix}/webhooks/secret")
        check(live, "GET", f"{prefix}/models")
        owner, name = SEEDANCE.split("/")
        check(live, "GET", f"{prefix}/models/{{owner}}/{{name}}", owner=owner, name=name)
    assert held == _declared_models(document)
