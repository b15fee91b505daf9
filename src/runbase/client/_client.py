"""`Runbase`: the blocking client. GENERATED from `_async_client.py`: do not edit.

Change `_async_client.py` and run `python scripts/unasync.py`; a test fails when this file
is stale. The two faces share every line of logic, so they cannot drift.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from runbase.client._config import (
    ACCOUNT_PATH,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT_S,
    DEFAULT_WAIT_S,
    MODELS_PATH,
    RUNS_PATH,
    USER_AGENT,
    RunInput,
    auth_headers,
    create_body,
    list_params,
    model_path,
    new_idempotency_key,
    resolve_api_key,
    resolve_base_url,
    run_path,
)
from runbase.client._errors import (
    ConnectionFailed,
    RateLimited,
    RunbaseError,
    RunFailed,
    WaitTimeout,
    error_from_response,
    require_output_url,
)
from runbase.client._extensions import Account, ModelInfo, read_account, read_model
from runbase.client._models import (
    ProgressCallback,
    Run,
    RunPage,
    RunStatus,
    read_run_fields,
)
from runbase.client._pacing import RateLimitBudget, may_retry, poll_delays, retry_delay


class Runbase:
    """A client for a Runbase runs API server: runbase, or any compatible one.

    Args:
        api_key: `sk-...`; default: the RUNBASE_API_KEY environment variable. An empty key
            sends no Authorization header (the server answers `MissingApiKey`).
        base_url: the server's root, e.g. `https://video.example.com`; default:
            RUNBASE_BASE_URL, else `http://127.0.0.1:8000`.
        timeout: seconds to wait for any one answer.
        max_retries: how often a request is sent again before its error is raised: one
            refused with 429 `RATE_LIMITED`, and one that got no answer or a 5xx when it is
            safe to repeat (a GET, a cancel, a create with its Idempotency-Key).

    Example:
        >>> with Runbase() as client:
        ...     run = client.run(
        ...         "bytedance/seedance-1.5-pro",
        ...         SeedanceInput("A ceramic lamp on a desk", duration="4"),
        ...     )
        ...     run.download("lamp.mp4")
    """

    def __init__(
        self,
        api_key: str | None = None,
        base_url: str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_S,
        max_retries: int = DEFAULT_MAX_RETRIES,
    ) -> None:
        self.base_url = resolve_base_url(base_url)
        self.max_retries = max_retries
        self._api_key = resolve_api_key(api_key)
        self._budget = RateLimitBudget()
        self._http = httpx.Client(
            base_url=self.base_url, timeout=timeout, headers={"User-Agent": USER_AGENT}
        )
        self.runs = Runs(self)
        self.models = Models(self)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_url={self.base_url!r})"  # never the key

    def __enter__(self) -> Runbase:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the connections; the client cannot be used afterwards."""
        self._http.close()

    def run(
        self,
        model: str,
        input: RunInput,
        *,
        timeout: float = DEFAULT_WAIT_S,
        on_update: Callable[[Run], None] | None = None,
        idempotency_key: str | None = None,
    ) -> Run:
        """Create a run and wait until it succeeds; raises `RunFailed` if it fails (or is
        canceled).

        Example:
            >>> run = client.run("bytedance/seedance-1.5-pro", {"prompt": "A red kite"})
            >>> run.output_url
            'http://127.0.0.1:8000/files/runs/run_.../output.mp4?expires=...&sig=...'
        """
        run = self.runs.create(model, input, idempotency_key=idempotency_key)
        if on_update is not None:
            on_update(run)
        run = self.runs.wait(run.id, timeout=timeout, on_update=on_update)
        if run.status in (RunStatus.FAILED, RunStatus.CANCELED):
            raise RunFailed(run)
        return run

    def account(self) -> Account:
        """The account's balances and this key's spend and limits (a runbase extension)."""
        return read_account(self.request("GET", ACCOUNT_PATH))

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        content: bytes | None = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        resendable: bool | None = None,
    ) -> Any:
        """Send one request to the API (key, pacing and retries included); return its JSON.

        For what `runs` and `models` do not wrap, such as a compatible server's extra
        endpoints, or a body that is sent as given (`content`). `resendable` says that the
        request may be sent again after no answer or a 5xx; by default only GETs are.
        """
        response = self._send(
            method,
            path,
            json=json,
            content=content,
            params=params,
            headers=headers,
            resendable=method.upper() == "GET" if resendable is None else resendable,
        )
        return response.json()

    def _send(
        self,
        method: str,
        path: str,
        *,
        json: Any,
        content: bytes | None,
        params: Mapping[str, str] | None,
        headers: Mapping[str, str] | None,
        resendable: bool,
    ) -> httpx.Response:
        sent_headers = {**auth_headers(self._api_key), **(headers or {})}
        if content is not None:
            sent_headers["Content-Type"] = "application/json"
        attempt = 0
        while True:
            wait_s = self._budget.reserve(time.monotonic())
            if wait_s > 0:
                time.sleep(wait_s)
            error: RunbaseError
            try:
                response = self._http.request(
                    method, path, json=json, content=content, params=params, headers=sent_headers
                )
            except httpx.TransportError as exc:
                if attempt >= self.max_retries or not may_retry(exc, resendable=resendable):
                    raise ConnectionFailed(f"no answer from {self.base_url}: {exc}") from exc
                delay = retry_delay(attempt, None)
            else:
                self._budget.observe(response.headers, time.monotonic())
                if response.is_success:
                    return response
                error = error_from_response(response)
                if attempt >= self.max_retries or not may_retry(error, resendable=resendable):
                    raise error
                delay = retry_delay(
                    attempt, error.retry_after if isinstance(error, RateLimited) else None
                )
            attempt += 1
            time.sleep(delay)


class Runs:
    """`client.runs`: create, read, list, cancel, wait for and download runs."""

    def __init__(self, client: Runbase) -> None:
        self._client = client

    def _to_run(self, data: Any) -> Run:
        return Run(**read_run_fields(data), _runs=self)

    def create(self, model: str, input: RunInput, *, idempotency_key: str | None = None) -> Run:
        """Create a run; it is charged now and comes back `pending`.

        Every create carries an `Idempotency-Key`: `idempotency_key`, or a random one. So a
        create whose answer was lost (a timeout, a dropped connection, a 5xx) is sent again
        with the same key, and the server answers it with the first run, charged once.
        Give your own key to make a create safe to repeat across restarts of your program.

        Example:
            >>> run = client.runs.create(
            ...     "bytedance/seedance-1.5-pro", SeedanceInput("A red kite", resolution="480p")
            ... )
            >>> run.status, run.cost_micro_usd
            (<RunStatus.PENDING: 'pending'>, 48384)
        """
        data = self._client.request(
            "POST",
            RUNS_PATH,
            json=create_body(model, input),
            headers={"Idempotency-Key": idempotency_key or new_idempotency_key()},
            resendable=True,
        )
        return self._to_run(data)

    def get(self, run_id: str) -> Run:
        """Read a run as it is now."""
        return self._to_run(self._client.request("GET", run_path(run_id)))

    def list(
        self,
        *,
        limit: int | None = None,
        status: RunStatus | str | None = None,
        model: str | None = None,
        created_after: datetime | str | None = None,
        created_before: datetime | str | None = None,
        cursor: str | None = None,
    ) -> RunPage[Run]:
        """One page of the account's runs, newest first (a runbase extension).

        Example:
            >>> page = client.runs.list(limit=5, status="succeeded")
            >>> [run.id for run in page.data], page.next_cursor
        """
        params = list_params(
            limit=limit,
            status=status,
            model=model,
            created_after=created_after,
            created_before=created_before,
            cursor=cursor,
        )
        data = self._client.request("GET", RUNS_PATH, params=params)
        runs = tuple(self._to_run(item) for item in data.get("data") or ())
        return RunPage(runs, data.get("nextCursor"))

    def cancel(self, run_id: str) -> Run:
        """Cancel a run and return it, `canceled` and refunded (a runbase extension).

        Raises `RunAlreadyFinished` when it had already finished, and `CancelTimedOut` when
        its engine did not stop in time (the run is then canceled as soon as it does).
        """
        path = f"{run_path(run_id)}/cancel"
        return self._to_run(self._client.request("POST", path, resendable=True))

    def wait(
        self,
        run_id: str,
        *,
        timeout: float = DEFAULT_WAIT_S,
        on_update: Callable[[Run], None] | None = None,
    ) -> Run:
        """Poll a run until it has finished, and return it (failed and canceled runs too).

        Polls every 0.5 s at first, backing off to 2 s, and slower still when the key's
        rate-limit budget runs low. `on_update(run)` sees every state read. Raises
        `WaitTimeout` after `timeout` seconds.

        Example:
            >>> run = client.runs.wait(run.id, on_update=lambda r: print(r.progress))
        """
        deadline = time.monotonic() + timeout
        delays = poll_delays()
        while True:
            run = self.get(run_id)
            if on_update is not None:
                on_update(run)
            if run.is_finished:
                return run
            now = time.monotonic()
            if now >= deadline:
                raise WaitTimeout(run, timeout)
            delay = self._client._budget.poll_delay(next(delays), now)
            time.sleep(min(delay, deadline - now))

    def download(
        self,
        run: Run,
        path: str | os.PathLike[str] | None = None,
        *,
        on_progress: ProgressCallback | None = None,
    ) -> Path:
        """Save a succeeded run's video; see `Run.download`."""
        url = require_output_url(run)
        target = run._target_path(path)
        partial = target.with_name(f".{target.name}.part")
        try:
            # No Authorization header: the URL is signed, and it may point at another host
            # (a CDN, a bucket) that must never see the key.
            with self._client._http.stream("GET", url) as response:
                if not response.is_success:
                    response.read()
                    raise error_from_response(response)
                total = int(response.headers.get("content-length") or 0) or None
                done = 0
                with partial.open("wb") as file:
                    for chunk in response.iter_bytes():
                        file.write(chunk)
                        done += len(chunk)
                        if on_progress is not None:
                            on_progress(done, total)
            partial.replace(target)  # never leave a half-written file under the real name
        except httpx.TransportError as exc:
            raise ConnectionFailed(f"the download of run {run.id} broke off: {exc}") from exc
        finally:
            partial.unlink(missing_ok=True)
        return target


class Models:
    """`client.models`: the models the server runs, with schemas, prices and engines."""

    def __init__(self, client: Runbase) -> None:
        self._client = client

    def list(self) -> tuple[ModelInfo, ...]:
        """Every model the server runs (a runbase extension)."""
        data = self._client.request("GET", MODELS_PATH)
        return tuple(read_model(item) for item in data.get("data") or ())

    def get(self, model_id: str) -> ModelInfo:
        """One model, e.g. "bytedance/seedance-1.5-pro"; `ModelNotFound` if it has none."""
        return read_model(self._client.request("GET", model_path(model_id)))
