"""The seam between runbase and a provider it forwards runs to (ModelArk, fal, Replicate, a
Runbase server): the `Provider` protocol, what passes through it, and how it fails.

A provider generates nothing here: each run is a submit, some polls (or a callback), and
a download, all I/O. So providers live in the worker's event loop, not in a child process,
and one process carries many runs at once: `dispatch.gateway` holds up to
`Provider.max_in_flight` runs per provider, routes each run along `RUNBASE_ENGINES`, and
records every attempt in the database (`core.attempts`) before and after each submit.
A provider never touches the database, the blob store or the run's status.

    Provider.check_input(model, input)   at creation: refuse what it cannot honour
    Provider.start() / close()           once per process: open / close HTTP clients
    Provider.submit(job, log)            -> upstream task id (the provider accepted it)
    Provider.poll(task_id, log)          -> Running | Finished
    Provider.result(task_id, log)        -> Output (the video's URL, usage), once finished
    Provider.cancel(task_id)             best effort; never raises
    Provider.cost_micros(job, output, state)   the price table: what the attempt costs
    Provider.read_callback(callback)     -> the task id an authentic callback names

The runtime downloads `Output.video_url` at once (links expire) through runbase's checked
connection path, checks the MP4 against the contract and stores it, exactly as for a
compute engine's file.

How a provider fails decides what the router does next (README "Routing"):

    ProviderFailure                 `message` is shown to the user: plain words, no internals
    ├── NotAccepted                 the submit was refused or failed for the provider's own
    │                               reasons (connection refused, 5xx, 429 after retries,
    │                               our credentials, quota, balance): nothing runs upstream.
    │                               -> the next provider at once; counts for the breaker
    ├── TaskFailed                  accepted, then failed or lost on the provider's side
    │                               (internal error, its own timeout, expired, gone).
    │                               -> retried once on the next provider; counts for the breaker
    ├── ContentRefused              the user's prompt or image (or the video made from it)
    │                               refused under the provider's content policy.
    │                               -> the run fails, refunded; never sent elsewhere
    ├── InputUnsupported            this provider cannot honour this input (a size, a
    │                               duration, two images...). -> the next provider; at
    │                               creation the run is refused when no provider of the
    │                               route can take it
    └── SubmitUncertain             the submit may have reached the provider but no answer
                                    came back, and the provider takes no idempotency key:
                                    sending it again could pay twice.
                                    -> the run fails, refunded

Anything else a provider raises is a bug: it is logged with its traceback, the attempt is
treated as `TaskFailed` when a task id was recorded and `NotAccepted` otherwise, and the
run's error says only that the provider failed.

Idempotency: a provider whose API takes an idempotency key sets `accepts_idempotency_key`
and sends `job.idempotency_key` (the run id; one run is never sent to one provider twice)
with the submit. After a crash between the submit and the record of its task id, the
runtime then submits again and the provider answers with the same task; a provider without
one gets `SubmitUncertain`'s treatment instead.

Callbacks are a fast path only: when `RUNBASE_PUBLIC_URL` is set and `supports_callbacks`
is true, `job.callback_url` is a runbase URL (signed by runbase, naming the run) that the
provider passes upstream. A callback that arrives there is checked by runbase's signature,
then by `read_callback` (the provider's own signature, if it has one); an accepted one only
wakes the run's poll loop, which reads the task back through `poll`. A lost or forged
callback changes nothing, and polling goes on regardless.

`ark` (providers/ark.py) is the worked example.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

if TYPE_CHECKING:
    from runbase.config import Settings

__all__ = [
    "AttemptState",
    "CallbackRequest",
    "ContentRefused",
    "Finished",
    "InputUnsupported",
    "NotAccepted",
    "Output",
    "Provider",
    "ProviderFailure",
    "ProviderJob",
    "RunLog",
    "Running",
    "SubmitUncertain",
    "TaskFailed",
    "TokenPrices",
    "video_tokens",
]


# ---- what a provider is given -------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ProviderJob:
    """One run, as sent to one provider: validated, with everything derived.

    `input` is the run's validated input (for seedance-1.5-pro: prompt, aspect_ratio,
    resolution, duration, generate_audio, image_urls, seed, camera_fixed). The fields below
    are what the output must be, worked out once by the runtime: `aspect_ratio` is concrete
    (with images and no ratio, the allowed ratio nearest the first image's), `seed` is
    concrete (drawn when the user gave -1), and the video the provider makes must have
    exactly `width` x `height`, `num_frames` at `fps`, and audio iff `audio`.
    """

    run_id: str
    attempt: int
    """This attempt's number within the run (1, 2, ...): one per provider tried."""
    model: str
    input: Mapping[str, Any]
    aspect_ratio: str
    width: int
    height: int
    num_frames: int
    fps: int
    audio: bool
    seed: int
    image_urls: Sequence[str] = ()
    """As the user sent them: https:// URLs or data:image/...;base64 URIs."""
    idempotency_key: str
    """Send it where the upstream takes an idempotency key: the same on every retry."""
    callback_url: str | None = None
    """Where the provider may call back (None: no callbacks; poll only)."""

    @property
    def prompt(self) -> str:
        return str(self.input.get("prompt", ""))

    @property
    def duration_seconds(self) -> int:
        return (self.num_frames - 1) // self.fps

    @property
    def resolution(self) -> str:
        return str(self.input.get("resolution", "720p"))


class RunLog(Protocol):
    """Where a provider tells the run's owner what happens (the run's `logs` and progress)."""

    def log(self, message: str) -> None:
        """Add a short line to the run's `logs`: no secrets, no internals."""

    def progress(self, fraction: float, stage: str = "") -> None:
        """Report how far the upstream task got, in [0, 1]."""


# ---- what a provider answers ------------------------------------------------------------


@dataclass(frozen=True)
class Running:
    """The task is not finished: `fraction` in [0, 1] and the provider's own word for it."""

    fraction: float
    stage: str = ""
    retry_after_s: float | None = None
    """When the provider says when to ask again (a queue position, Retry-After)."""


@dataclass(frozen=True)
class Finished:
    """The task succeeded: `result` may be read now."""


@dataclass(frozen=True)
class Output:
    """A finished task's video, to download at once."""

    video_url: str
    usage: Mapping[str, Any] = field(default_factory=dict)
    """What the provider says it used (tokens, seconds): read by `cost_micros`. Anything
    else worth keeping about the task goes to the run's logs (`RunLog`)."""


class AttemptState(StrEnum):
    """An attempt's state in the `upstream_attempts` table."""

    SUBMITTING = "submitting"  # written before the submit: nothing known yet
    ACCEPTED = "accepted"  # the provider answered with a task id: resume it after a crash
    SUCCEEDED = "succeeded"  # its video was stored and the run succeeded
    FAILED = "failed"  # error_class says how (a ProviderFailure's `error_class`)
    CANCELED = "canceled"  # the run was canceled while the task was upstream
    UNCERTAIN = "uncertain"  # interrupted while submitting, not submitted again


# ---- failures ---------------------------------------------------------------------------


class ProviderFailure(Exception):
    """Why an attempt at one provider ended without a video. `message` is for the user."""

    error_class: ClassVar[str] = "provider_failure"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class NotAccepted(ProviderFailure):
    """The provider did not take the task, for its own reasons: try the next provider."""

    error_class = "not_accepted"


class TaskFailed(ProviderFailure):
    """The provider took the task and then failed or lost it: retry once elsewhere."""

    error_class = "task_failed"


class ContentRefused(ProviderFailure):
    """The provider's content policy refused the user's input or the video: the user's."""

    error_class = "content_refused"


class InputUnsupported(ProviderFailure):
    """This provider cannot make what the input asks for: another one may."""

    error_class = "input_unsupported"


class SubmitUncertain(ProviderFailure):
    """The submit may have been taken; without an idempotency key it is not repeated."""

    error_class = "submit_uncertain"


# ---- callbacks ----------------------------------------------------------------------------


@dataclass(frozen=True)
class CallbackRequest:
    """A callback as it reached runbase's callback route (runbase's signature checked)."""

    headers: Mapping[str, str]
    """Lower-case names."""
    body: bytes


# ---- prices -------------------------------------------------------------------------------


def video_tokens(width: int, height: int, fps: int, seconds: int) -> int:
    """Video tokens as ByteDance's providers count them: w x h x fps x seconds / 1024."""
    return math.ceil(width * height * fps * seconds / 1024)


@dataclass(frozen=True)
class TokenPrices:
    """A price table by video tokens: micro-USD per million, with and without audio."""

    silent: int
    audio: int

    def cost_micros(self, tokens: int, *, audio: bool) -> int:
        rate = self.audio if audio else self.silent
        return -(-tokens * rate // 1_000_000)


@dataclass(frozen=True)
class Pacing:
    """What every built-in provider is configured with beside its address, key and prices
    (`RUNBASE_<NAME>_MAX_IN_FLIGHT`, `..._POLL_INTERVAL_SECONDS`, ...): the `Provider`
    attributes of the same names."""

    max_in_flight: int = 100
    poll_interval_s: float = 2.0
    max_poll_interval_s: float = 10.0
    timeout_s: float = 1800.0
    submit_retry_s: float = 10.0
    """How long a submit refused for the provider's own reasons (429, 5xx, a refused
    connection) is tried again before the run moves on."""
    allow_private_hosts: bool = False

    @classmethod
    def from_settings(cls, settings: Settings, name: str) -> Pacing:
        """The settings `<name>_max_in_flight`, `<name>_poll_interval_seconds`, ..."""

        def setting(field: str) -> Any:
            return getattr(settings, f"{name}_{field}")

        return cls(
            max_in_flight=setting("max_in_flight"),
            poll_interval_s=setting("poll_interval_seconds"),
            max_poll_interval_s=setting("max_poll_interval_seconds"),
            timeout_s=setting("timeout_seconds"),
            submit_retry_s=setting("submit_retry_seconds"),
            allow_private_hosts=setting("allow_private_hosts"),
        )


class PacedProvider:
    """A base for providers: the `Provider` attributes that a `Pacing` holds."""

    def __init__(self, pacing: Pacing) -> None:
        self.max_in_flight = pacing.max_in_flight
        self.poll_interval_s = pacing.poll_interval_s
        self.max_poll_interval_s = max(pacing.max_poll_interval_s, pacing.poll_interval_s)
        self.timeout_s = pacing.timeout_s
        self.submit_retry_s = pacing.submit_retry_s
        self.allow_private_hosts = pacing.allow_private_hosts


# ---- the protocol ------------------------------------------------------------------------


@runtime_checkable
class Provider(Protocol):
    """A service that generates runs on its own machines; `name` becomes the run's `backend`.

    Build one with a `from_settings(settings)` classmethod (the registry in
    `runbase.providers` calls it); building must not do I/O. Every method but the
    constructor and `check_input` is called on the worker's event loop and must never block
    it: use `httpx.AsyncClient`, and `asyncio.to_thread` for anything slow.
    """

    name: str
    """Short and stable ("ark"): in RUNBASE_ENGINES, the run's `backend`, metrics, the table."""

    max_in_flight: int
    """At most this many of this provider's tasks are in flight from one process
    (`RUNBASE_<NAME>_MAX_IN_FLIGHT`)."""

    accepts_idempotency_key: bool
    """True when the submit sends `job.idempotency_key` and the upstream replays on it."""

    supports_callbacks: bool
    """True when the submit passes `job.callback_url` upstream."""

    allow_private_hosts: bool
    """Let the video download reach loopback and private addresses (tests only)."""

    poll_interval_s: float
    """The first wait between polls; the runtime grows it 1.5x per poll, up to
    `max_poll_interval_s`."""

    max_poll_interval_s: float

    timeout_s: float
    """The longest one attempt may take, from submit to a downloaded video."""

    def configuration_problem(self) -> str | None:
        """Why this provider cannot work with the settings it has ("needs
        RUNBASE_ARK_API_KEY"), or None. Checked at start: no I/O."""

    def check_input(self, model: str, validated_input: Mapping[str, Any]) -> None:
        """Raise `InputUnsupported` (with a message for the user) for an input this provider
        cannot honour exactly. Called at creation and again before each submit: cheap, no
        I/O."""

    async def start(self) -> None:
        """Open clients; called once per process before the first submit."""

    async def close(self) -> None:
        """Close clients; called once at shutdown."""

    async def submit(self, job: ProviderJob, log: RunLog) -> str:
        """Create the upstream task and answer its id, once the provider has accepted it.

        Retry what is safe to retry inside (429 with Retry-After, 5xx, a refused
        connection) for a short while, then raise `NotAccepted`. Raise `SubmitUncertain`
        when the request may have been taken but no answer came back and the provider takes
        no idempotency key; `ContentRefused` and `InputUnsupported` as they say.
        """

    async def poll(self, task_id: str, log: RunLog) -> Running | Finished:
        """Read the task's state once. Raise `TaskFailed` (or `ContentRefused`) when it
        ended without a video; ride out transient errors by answering `Running`."""

    async def result(self, task_id: str, log: RunLog) -> Output:
        """The finished task's video URL and usage (raises as `poll` does)."""

    async def cancel(self, task_id: str) -> bool:
        """Ask the provider to stop the task; True when it says it will not bill it (or
        stopped it). Best effort: log, never raise."""

    def cost_micros(self, job: ProviderJob, output: Output | None, state: AttemptState) -> int:
        """What this attempt costs upstream, in micro-USD, from the provider's price table
        (configurable, defaulting to its published prices). `output` is given when the
        task succeeded (its `usage` may say what was billed); `state` is how the attempt
        ended (most providers bill only succeeded tasks; some bill a canceled running one)."""

    async def read_callback(self, callback: CallbackRequest) -> str | None:
        """The task id an authentic callback is about, or None to ignore it (not this
        provider's format, a bad signature). runbase has already checked its own URL
        signature; check the provider's own here, if it signs its callbacks."""
