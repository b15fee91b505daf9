"""The SDK has an exception class for every error code the runs API can answer.

The server's codes are its error classes (`runbase.errors` and the route modules that add
their own, such as `file_not_found`), each with `code` and `http_status`. The compatible
surfaces (`/v1/videos`, `/api/v3`) answer in OpenAI's and ModelArk's envelopes, for those
vendors' SDKs, and the admin API's refusals (`AdminError`) are never answered on the runs
API, so their classes are not the runbase SDK's business.
"""

from __future__ import annotations

import httpx
import pytest

import runbase.http.app  # noqa: F401  (imports every route module: all error classes)
from runbase import errors
from runbase.client import APIError, ServerError
from runbase.client._errors import _BY_CODE, error_from_response

COMPATIBLE_SURFACES = ("runbase.http.routes.openai_videos", "runbase.http.routes.ark_compat")


def server_error_codes() -> dict[str, set[int]]:
    """Every (code, HTTP status) a Runbase-envelope error class of the server can carry."""
    codes: dict[str, set[int]] = {errors.ServerError.code: {errors.ServerError.http_status}}

    def walk(parent: type[errors.RunbaseError]) -> None:
        for cls in parent.__subclasses__():
            # The admin API's refusals, and a provider's callback with a bad signature: never
            # answered on the runs API.
            if issubclass(cls, errors.AdminError | errors.InvalidCallbackSignature):
                continue
            if not cls.__module__.startswith("runbase.") or cls.__module__.startswith(
                COMPATIBLE_SURFACES
            ):
                continue
            codes.setdefault(cls.code, set()).add(cls.http_status)
            walk(cls)

    walk(errors.ApiError)
    return codes


SERVER_CODES = sorted(
    (code, status) for code, statuses in server_error_codes().items() for status in statuses
)


def test_the_server_table_is_read_whole() -> None:
    codes = dict(server_error_codes())
    # A few from each corner: the contract's, the extensions', a route module's own.
    assert codes["run_not_found"] == {404} and codes["idempotency_key_reused"] == {409}
    assert codes["file_not_found"] == {404} and codes["model_not_found"] == {400, 404}
    assert codes["request_too_large"] == {413} and codes["internal_error"] == {500}
    assert len(codes) >= 23


@pytest.mark.parametrize(
    ("code", "status"), SERVER_CODES, ids=[f"{c}-{s}" for c, s in SERVER_CODES]
)
def test_every_server_code_has_its_exception(code: str, status: int) -> None:
    assert code in _BY_CODE, f"the SDK has no exception class for {code!r}"
    cls = _BY_CODE[code]
    assert cls.code == code
    assert cls.status in server_error_codes()[code]
    body = {"error": {"message": "from the server", "code": code}}
    request = httpx.Request("GET", "http://127.0.0.1/api/v1/runs")
    error = error_from_response(httpx.Response(status, json=body, request=request))
    assert type(error) is cls and (error.code, error.status) == (code, status)
    assert error.message == "from the server"


def test_unknown_codes_fall_back_to_their_status() -> None:
    request = httpx.Request("GET", "http://127.0.0.1/")
    teapot = httpx.Response(
        418, json={"error": {"code": "teapot", "message": "no"}}, request=request
    )
    assert type(error_from_response(teapot)) is APIError
    proxy_page = httpx.Response(503, text="<h1>down</h1>", request=request)
    error = error_from_response(proxy_page)
    assert type(error) is ServerError and error.code == "http_503"
