"""`ArkEngine`: forward runs to ByteDance's own Seedance on BytePlus ModelArk (or Volcengine Ark).

    generate(request, progress)
      1. resume the upstream task recorded for this run, or submit one    _submit
         (top-level parameters, `role` on every image, no `--flags`)
      2. poll it with backoff until it is terminal                        _poll
      3. download the MP4 at once: upstream links expire after 24 h       _download
      4. return output.mp4; the worker probes it against the contract     GenerationResult

Crash safety: the task id is written to `<data_dir>/upstream/<run_id>/ark-task.json`
before anything else happens to it, and a marker is written before the create request is
sent. A retried run (the worker died, the server was killed) finds the id and polls the
same task, so a task is never submitted twice; if it finds only the marker (a crash during
the create request) it fails the run rather than risk paying upstream twice. Records older
than 7 days are removed when the engine starts.

The API key is a `SecretStr`: it goes into the Authorization header and nowhere else (not
into logs, errors, run logs or metadata).

Cancel: ModelArk cancels only `queued` tasks (DELETE); a `running` task cannot be stopped
and is still billed upstream. The run is canceled either way.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

import httpcore
import httpx

from runbase.engines.base import GenerationRequest, GenerationResult, ProgressSink
from runbase.errors import EngineUnavailable, RunCanceled, RunFailure, UpstreamError
from runbase.outbound import Deadline, allow_all, checked_pool, public_only

if TYPE_CHECKING:
    from pydantic import SecretStr

    from runbase.config import Settings

__all__ = ["ArkEngine", "strip_text_commands"]

logger = logging.getLogger(__name__)

TASKS_PATH: Final = "/contents/generations/tasks"
STATE_FILE: Final = "ark-task.json"
STATE_KEEP_S: Final = 7 * 24 * 3600.0  # ModelArk itself keeps tasks visible for 7 days
_PROGRESS: Final = {"queued": 0.1, "running": 0.5}
_RETRYABLE: Final = frozenset({429, 500, 502, 503, 504})
_MAX_BACKOFF_S: Final = 30.0
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})

# The legacy "text commands" (docs/compat.md, "Text commands"), long and short forms. Upstream reads
# them from the prompt and they override the top-level fields, so a user could ask for
# 12 s at 1080p after being charged for 4 s at 480p. Every `--word` token is removed; a
# value after it is removed too when it looks like one (a number, 720p, 16:9, true, ...).
_TEXT_COMMAND: Final = re.compile(
    r"(?<!\S)--[A-Za-z][\w-]*"
    r"(?:(?:=|\s+)(?:-?\d+(?:\.\d+)?[A-Za-z]*|\d+:\d+|true|false|adaptive|default|flex)(?!\S))?",
    re.IGNORECASE,
)


def strip_text_commands(prompt: str) -> tuple[str, list[str]]:
    """The prompt without `--flag [value]` text commands, and the commands removed."""
    removed = [match.group(0) for match in _TEXT_COMMAND.finditer(prompt)]
    cleaned = _TEXT_COMMAND.sub(" ", prompt)
    return re.sub(r"[ \t]{2,}", " ", cleaned).strip(), removed


class ArkEngine:
    """Seedance 1.5 Pro on ModelArk. Build it with `from_settings`; `setup` needs a key."""

    name = "ark"

    def __init__(
        self,
        *,
        api_key: SecretStr | None,
        base_url: str,
        model: str,
        state_dir: Path,
        poll_interval_s: float = 2.0,
        timeout_s: float = 1800.0,
        allow_private_hosts: bool = False,
        max_video_bytes: int = 512 * 1024 * 1024,
        download_timeout_s: float = 120.0,
    ) -> None:
        self._api_key = api_key
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.state_dir = state_dir
        self.poll_interval_s = poll_interval_s
        self.timeout_s = timeout_s
        self.allow_private_hosts = allow_private_hosts
        self.max_video_bytes = max_video_bytes
        self.download_timeout_s = download_timeout_s
        self._client: httpx.Client | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> ArkEngine:
        return cls(
            api_key=settings.ark_api_key,
            base_url=settings.ark_base_url,
            model=settings.ark_model,
            state_dir=settings.data_dir / "upstream",
            poll_interval_s=settings.ark_poll_interval_seconds,
            timeout_s=settings.ark_timeout_seconds,
            allow_private_hosts=settings.ark_allow_private_hosts,
        )

    def setup(self) -> None:
        """Open the HTTP client (without an API key the engine cannot start), and forget the
        task records of runs long finished."""
        if self._api_key is None or not self._api_key.get_secret_value():
            raise EngineUnavailable("the ark engine needs RUNBASE_ARK_API_KEY")
        forget_old_state(self.state_dir)
        self._client = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {self._api_key.get_secret_value()}"},
            timeout=30.0,
            follow_redirects=False,
        )

    def generate(self, request: GenerationRequest, progress: ProgressSink) -> GenerationResult:
        """Submit (or resume) the run's upstream task, wait for it, download its MP4."""
        if self._client is None:
            self.setup()
        deadline = time.monotonic() + self.timeout_s
        state_path = self.state_dir / request.run_id / STATE_FILE
        state = _read_state(state_path)
        task_id = state.get("task_id")
        if task_id is not None:
            progress.log(f"resuming upstream task {task_id}")
        elif state.get("submitting"):
            raise UpstreamError(
                "an earlier attempt was interrupted while submitting this run to ModelArk; "
                "it is not submitted again, so that it cannot be paid for twice"
            )
        else:
            _check_stop(progress)
            _write_state(state_path, {"submitting": True})
            task_id = self._submit(request, progress, deadline)
            _write_state(state_path, {"task_id": task_id})
        task = self._poll(task_id, progress, deadline)
        output = request.scratch_dir / "output.mp4"
        progress.progress(0.9, "downloading")
        content = task.get("content") or {}
        video_url = content.get("video_url") if isinstance(content, Mapping) else None
        if not isinstance(video_url, str) or not video_url:
            raise UpstreamError(f"ModelArk task {task_id} succeeded without a video URL")
        self._download(video_url, output, deadline)
        progress.progress(1.0, "done")
        metadata = {
            "upstream": "modelark",
            "upstream_task_id": task_id,
            "upstream_model": task.get("model", self.model),
            "usage": task.get("usage"),
        }
        return GenerationResult(files=(output,), metadata=metadata)

    # ---- upstream calls -----------------------------------------------------------------

    def create_body(self, request: GenerationRequest) -> dict[str, Any]:
        """The create-task body: parameters as top-level fields, never as text commands."""
        prompt, _ = strip_text_commands(request.prompt)
        content: list[dict[str, Any]] = [{"type": "text", "text": prompt}]
        urls = list(request.input.get("image_urls") or [])
        roles = ("first_frame", "last_frame")
        for role, url in zip(roles, urls, strict=False):
            content.append({"type": "image_url", "image_url": {"url": url}, "role": role})
        return {
            "model": self.model,
            "content": content,
            "resolution": request.input.get("resolution", "720p"),
            "ratio": request.input.get("aspect_ratio") or "16:9",
            "duration": int(request.input.get("duration", 4)),
            "generate_audio": request.audio,
            "seed": request.seed,
            "camera_fixed": bool(request.input.get("camera_fixed", False)),
            "watermark": False,
        }

    def _submit(self, request: GenerationRequest, progress: ProgressSink, deadline: float) -> str:
        _, removed = strip_text_commands(request.prompt)
        if removed:
            progress.log(f"text commands removed from the prompt: {' '.join(removed)}")
        progress.progress(0.05, "submitting")
        answer = self._call("POST", TASKS_PATH, progress, deadline, json=self.create_body(request))
        task_id = answer.get("id")
        if not isinstance(task_id, str) or not task_id:
            raise UpstreamError("ModelArk accepted the task but returned no id")
        logger.info("run %s submitted to ModelArk as task %s", request.run_id, task_id)
        return task_id

    def _poll(self, task_id: str, progress: ProgressSink, deadline: float) -> dict[str, Any]:
        interval = self.poll_interval_s
        reported: str | None = None
        while True:
            task = self._call("GET", f"{TASKS_PATH}/{task_id}", progress, deadline)
            status = task.get("status")
            if status == "succeeded":
                return task
            if status in ("failed", "expired", "cancelled"):
                raise _task_failure(task_id, str(status), task.get("error"))
            if status != reported and isinstance(status, str):
                progress.progress(_PROGRESS.get(status, 0.1), status)
                reported = status
            self._wait(interval, progress, deadline, task_id)
            interval = min(interval * 1.5, self.poll_interval_s * 5)

    def _cancel(self, task_id: str | None) -> None:
        """Ask upstream to cancel; it can only while the task is queued (then it is free)."""
        if task_id is None or self._client is None:
            return
        try:
            response = self._client.delete(f"{TASKS_PATH}/{task_id}")
            if response.status_code >= 400:
                logger.info("ModelArk kept task %s (HTTP %s)", task_id, response.status_code)
        except httpx.HTTPError as exc:
            logger.warning("canceling ModelArk task %s failed: %s", task_id, exc)

    def _call(
        self,
        method: str,
        path: str,
        progress: ProgressSink,
        deadline: float,
        *,
        json: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One API call; 429, 5xx and transport errors are retried with backoff."""
        assert self._client is not None
        task_id = path.rsplit("/", 1)[-1] if method == "GET" else None
        attempt = 0
        while True:
            retry_after: float | None = None
            try:
                response = self._client.request(method, path, json=json)
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}"
            else:
                if response.status_code < 300:
                    body: Any = response.json()
                    if not isinstance(body, dict):
                        raise UpstreamError("ModelArk answered with something other than an object")
                    return body
                if response.status_code not in _RETRYABLE:
                    raise _http_failure(response)
                problem = f"HTTP {response.status_code}"
                retry_after = _retry_after(response)
            delay = min(self.poll_interval_s * 2**attempt, _MAX_BACKOFF_S)
            delay = max(delay, min(retry_after or 0.0, _MAX_BACKOFF_S))
            attempt += 1
            if attempt in (1, 5, 10):
                progress.log(f"ModelArk busy ({problem}); retrying")
            self._wait(delay, progress, deadline, task_id)

    def _wait(
        self, seconds: float, progress: ProgressSink, deadline: float, task_id: str | None
    ) -> None:
        """Sleep in small steps, stopping for a cancel and failing past the deadline."""
        end = time.monotonic() + seconds
        while True:
            if progress.should_stop():
                self._cancel(task_id)
                raise RunCanceled()
            now = time.monotonic()
            if now >= deadline:
                raise UpstreamError(f"ModelArk did not finish within {self.timeout_s:g} s")
            if now >= end:
                return
            time.sleep(min(0.05, end - now))

    def _download(self, url: str, output: Path, deadline: float) -> None:
        """Stream the video to `output`, within a size cap and a timeout, redirects checked.

        The link comes from upstream, not from a user, but a compromised or spoofed answer
        must not turn the worker into a proxy into our own network: connections go only to
        public addresses (`runbase.outbound`), checked as they are opened.
        """
        end = min(deadline, time.monotonic() + self.download_timeout_s)
        current = httpx.URL(url)
        partial = output.with_suffix(".part")
        output.parent.mkdir(parents=True, exist_ok=True)
        refused = "the ModelArk video link points at a non-public address; refused: "
        check = (
            allow_all
            if self.allow_private_hosts
            else public_only(lambda reason: UpstreamError(refused + reason))
        )
        transfer = Deadline(max(end - time.monotonic(), 0.0))
        # A pool of its own: the API key is for the API host, never for the storage host.
        with checked_pool(check, transfer) as pool:
            for _ in range(4):
                if current.scheme not in ("http", "https") or not current.host:
                    raise UpstreamError("ModelArk returned a video link that is not http(s)")
                target = httpcore.URL(
                    scheme=current.raw_scheme,
                    host=current.raw_host,
                    port=current.port,
                    target=current.raw_path,
                )
                try:
                    with pool.stream(
                        "GET", target, extensions={"timeout": transfer.timeouts()}
                    ) as response:
                        headers = {name.lower(): value for name, value in response.headers}
                        if response.status in _REDIRECTS and b"location" in headers:
                            current = current.join(headers[b"location"].decode("latin-1"))
                            continue
                        if response.status in (403, 404, 410):
                            raise UpstreamError(
                                "the ModelArk video link has expired or is gone "
                                f"(HTTP {response.status})"
                            )
                        if response.status != 200:
                            raise UpstreamError(
                                f"downloading the ModelArk video failed: HTTP {response.status}"
                            )
                        self._save(response, headers, partial)
                        os.replace(partial, output)
                        return
                except httpcore.TimeoutException as exc:
                    partial.unlink(missing_ok=True)
                    raise UpstreamError("downloading the ModelArk video took too long") from exc
                except (httpcore.NetworkError, httpcore.ProtocolError, httpx.InvalidURL) as exc:
                    partial.unlink(missing_ok=True)
                    raise UpstreamError(
                        f"downloading the ModelArk video failed: {type(exc).__name__}"
                    ) from exc
                except RunFailure:
                    partial.unlink(missing_ok=True)
                    raise
        raise UpstreamError("the ModelArk video link redirected too many times")

    def _save(
        self, response: httpcore.Response, headers: dict[bytes, bytes], partial: Path
    ) -> None:
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > self.max_video_bytes:
            raise UpstreamError("the ModelArk video is larger than the download limit")
        written = 0
        with partial.open("wb") as file:
            for chunk in response.iter_stream():
                written += len(chunk)
                if written > self.max_video_bytes:
                    raise UpstreamError("the ModelArk video is larger than the download limit")
                file.write(chunk)


def _task_failure(task_id: str, status: str, error: Any) -> UpstreamError:
    code = error.get("code") if isinstance(error, Mapping) else None
    message = error.get("message") if isinstance(error, Mapping) else None
    if status == "expired":
        return UpstreamError(f"ModelArk task {task_id} expired before it finished (TaskExpired)")
    if status == "cancelled":
        return UpstreamError(f"ModelArk task {task_id} was cancelled upstream (TaskCancelled)")
    if isinstance(code, str) and "SensitiveContent" in code:
        return UpstreamError(
            f"ModelArk refused the content under its content policy ({code}): {message or ''}"
        )
    return UpstreamError(f"ModelArk task {task_id} failed ({code or 'unknown'}): {message or ''}")


def _http_failure(response: httpx.Response) -> UpstreamError:
    """A non-retryable HTTP answer, with upstream's code and message (never our key)."""
    code, message = "unknown", response.reason_phrase
    try:
        error = response.json().get("error") or {}
        code = str(error.get("code") or code)
        message = str(error.get("message") or message)
    except (ValueError, AttributeError):
        pass
    if response.status_code in (401, 403):
        return UpstreamError(f"ModelArk refused runbase's credentials ({code})")
    if "SensitiveContent" in code:
        return UpstreamError(
            f"ModelArk refused the content under its content policy ({code}): {message}"
        )
    return UpstreamError(
        f"ModelArk refused the task: HTTP {response.status_code} {code}: {message}"
    )


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after", "")
    try:
        return float(value)
    except ValueError:
        return None


def forget_old_state(state_dir: Path, keep_s: float = STATE_KEEP_S) -> None:
    """Remove task records untouched for `keep_s`: a run is retried within its maximum
    processing time (30 min by default), so after days a record protects nothing."""
    if not state_dir.is_dir():
        return
    cutoff = time.time() - keep_s
    for run_dir in state_dir.iterdir():
        state = run_dir / STATE_FILE
        try:
            if state.stat().st_mtime < cutoff:
                state.unlink()
                run_dir.rmdir()
        except OSError:  # gone already, or not ours: leave it
            continue


def _check_stop(progress: ProgressSink) -> None:
    if progress.should_stop():
        raise RunCanceled()


def _read_state(path: Path) -> dict[str, Any]:
    try:
        data: Any = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise UpstreamError(f"the saved upstream task state is unreadable: {exc}") from exc
    return data if isinstance(data, dict) else {}


def _write_state(path: Path, state: Mapping[str, Any]) -> None:
    """Write atomically and durably: this file is what stops a second submission."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    with temporary.open("w") as file:
        json.dump(dict(state), file)
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
