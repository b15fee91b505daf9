"""`Runbase`: the blocking client.

Errors from httpx are translated here, at the one place requests are sent (`_send`), so
callers only ever see `RunbaseError` subclasses.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx

from runbase.client._config import (
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT_S,
    DEFAULT_WAIT_S,
    RUNS_PATH,
    USER_AGENT,
    RunInput,
    auth_headers,
    create_body,
    resolve_api_key,
    resolve_base_url,
    run_path,
)
from runbase.client._errors import (
    ConnectionFailed,
    RateLimited,
    RunFailed,
    WaitTimeout,
    error_from_response,
)
from runbase.client._models import (
    ProgressCallback,
    Run,
    RunStatus,
    read_run_fields,
    require_output_url,
)
from runbase.client._pacing import RateLimitBudget, may_resend, poll_delays, retry_delay


class Runbase:
    """A client for a Runbase runs API server: runbase, or any compatible one.

    Args:
        api_key: `sk-...`; default: the RUNBASE_API_KEY environment variable. An empty key
            sends no Authorization header (the server answers `MissingApiKey`).
        base_url: the server's root, e.g. `https://video.example.com`; default:
            RUNBASE_BASE_URL, else `http://127.0.0.1:8000`.
        timeout: seconds to wait for any one answer.
        max_retries: how often a request refused with 429 `RATE_LIMITED`, or a GET that got
            no answer, is sent again before its error is raised.

    Example:
        >>> from runbase.client import Runbase, SeedanceInput
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

    def __repr__(self) -> str:
        return f"Runbase(base_url={self.base_url!r})"  # never the key

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
    ) -> Run:
        """Create a run and wait until it succeeds; raises `RunFailed` if it fails.

        Example:
            >>> run = client.run("bytedance/seedance-1.5-pro", {"prompt": "A red kite"})
            >>> run.output_url
            'http://127.0.0.1:8000/files/runs/run_.../output.mp4?expires=...&sig=...'
        """
        run = self.runs.create(model, input)
        if on_update is not None:
            on_update(run)
        run = self.runs.wait(run.id, timeout=timeout, on_update=on_update)
        if run.status == RunStatus.FAILED:
            raise RunFailed(run)
        return run

    def request(
        self, method: str, path: str, *, json: Any = None, content: bytes | None = None
    ) -> Any:
        """Send one request to the API (key, pacing and retries included); return its JSON.

        For what `runs` does not wrap, such as a compatible server's extra endpoints, or a
        body that is sent as given (`content`).
        """
        return self._send(method, path, json=json, content=content).json()

    def _send(
        self, method: str, path: str, *, json: Any = None, content: bytes | None = None
    ) -> httpx.Response:
        headers = auth_headers(self._api_key)
        if content is not None:
            headers["Content-Type"] = "application/json"
        attempt = 0
        while True:
            wait_s = self._budget.reserve(time.monotonic())
            if wait_s > 0:
                time.sleep(wait_s)
            try:
                response = self._http.request(
                    method, path, json=json, content=content, headers=headers
                )
            except httpx.TransportError as exc:
                if attempt >= self.max_retries or not may_resend(method, exc):
                    raise ConnectionFailed(f"no answer from {self.base_url}: {exc}") from exc
                delay = retry_delay(attempt, None)
            else:
                self._budget.observe(response.headers, time.monotonic())
                if response.is_success:
                    return response
                error = error_from_response(response)
                if not isinstance(error, RateLimited) or attempt >= self.max_retries:
                    raise error
                delay = retry_delay(attempt, error.retry_after)
            attempt += 1
            time.sleep(delay)


class Runs:
    """`client.runs`: create, read, wait for and download runs."""

    def __init__(self, client: Runbase) -> None:
        self._client = client

    def _to_run(self, data: Any) -> Run:
        return Run(**read_run_fields(data), _runs=self)

    def create(self, model: str, input: RunInput) -> Run:
        """Create a run; it is charged now and comes back `pending`.

        Example:
            >>> run = client.runs.create(
            ...     "bytedance/seedance-1.5-pro", SeedanceInput("A red kite", resolution="480p")
            ... )
            >>> run.status, run.cost_usd
            (<RunStatus.PENDING: 'pending'>, 48384)
        """
        return self._to_run(self._client.request("POST", RUNS_PATH, json=create_body(model, input)))

    def get(self, run_id: str) -> Run:
        """Read a run as it is now."""
        return self._to_run(self._client.request("GET", run_path(run_id)))

    def wait(
        self,
        run_id: str,
        *,
        timeout: float = DEFAULT_WAIT_S,
        on_update: Callable[[Run], None] | None = None,
    ) -> Run:
        """Poll a run until it has succeeded or failed, and return it (failed runs too).

        Polls every 0.5 s at first, backing off to 2 s, and slower still when the key's
        rate-limit budget runs low. `on_update(run)` sees every state read. Raises
        `WaitTimeout` after `timeout` seconds.

        Example:
            >>> run = client.runs.wait(run.id, on_update=lambda r: print(r.status, r.progress))
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
            time.sleep(min(self._client._budget.poll_delay(next(delays), now), deadline - now))

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
