"""Where a worker's engine lives: an `EngineHost`, asked to generate one run at a time.

    EngineHost        the run loop: progress, stop on cancel or deadline, kill after grace
    ├── EngineProcess  the default: the engine in a spawned child process of the worker
    └── RayEngine      RUNBASE_EXECUTOR=ray: the engine in a Ray actor (dispatch/ray_executor.py)

`engine_hosts.open_engine(settings)` picks one. Either way a crash, a leak or a hang in an
engine never takes the server down. The worker and the engine exchange small frozen dataclasses:

    parent -> child   RunTask, or None to shut down
    child  -> parent  Ready | SetupFailed          once, after engine set-up
                      Progress | Log ...           while a run renders
                      Done | Failed                exactly one per RunTask

A stop request asks the engine to stop between steps (cancel, deadline). If it does not
stop within the grace period the host is killed; the next run starts a new one. The host
stays up between runs so that an engine loads its model once. A host that vanishes mid-run
(a Ray actor or node lost) raises `EngineLost`: the worker hands the run to the reaper,
which retries it once and then fails it with `worker_lost`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import gc
import json
import logging
import multiprocessing
import random
import shutil
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

from runbase.config import Settings
from runbase.engines.base import ProgressSink
from runbase.errors import EngineUnavailable, GenerationFailed, RunFailure, RunTimedOut

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunTask:
    run_id: str
    model: str
    input: Mapping[str, Any]
    scratch_dir: Path
    fail_with: str | None = None
    """A test run's failure marker (`core.testmode`): fail with this code, on purpose."""


@dataclass(frozen=True)
class Ready:
    backend: str
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class SetupFailed:
    message: str


@dataclass(frozen=True)
class Progress:
    fraction: float
    message: str = ""


@dataclass(frozen=True)
class Log:
    message: str


@dataclass(frozen=True)
class Done:
    files: tuple[Path, ...]
    """Files for the worker to store (in a scratch directory on its machine)."""
    stored_keys: tuple[str, ...] = ()
    """Files the engine's host already put in the blob store (a Ray actor on S3)."""


@dataclass(frozen=True)
class Failed:
    code: str
    message: str


ChildEvent = Progress | Log


class EngineLost(Exception):
    """The engine's host vanished mid-run (a Ray actor or its node): not the run's fault."""


def output_key(run_id: str, path: Path) -> str:
    """Where a run's output file is stored in the blob store."""
    return f"runs/{run_id}/{path.name}"


class EngineHost:
    """Holds one set-up engine for one worker; `run` generates one run at a time."""

    backend: str | None = None
    notes: tuple[str, ...] = ()

    @property
    def is_alive(self) -> bool:
        raise NotImplementedError

    async def start(self) -> None:
        """Start the host and wait until its engine is set up."""
        raise NotImplementedError

    def _send(self, task: RunTask) -> None:
        raise NotImplementedError

    async def _receive(self, *, deadline: float) -> object | None:
        """The engine's next message, or None at the deadline."""
        raise NotImplementedError

    def _ask_stop(self) -> None:
        raise NotImplementedError

    def kill(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError

    async def run(
        self,
        task: RunTask,
        *,
        deadline: float,
        on_event: Callable[[ChildEvent], None],
        should_cancel: Callable[[], bool] = lambda: False,
        grace_s: float = 5.0,
    ) -> Done:
        """Generate one run; raises a `RunFailure` for every way it can go wrong, and
        `EngineLost` when the host vanished.

        `deadline` is a `time.monotonic()` instant; past it the engine is asked to stop, and
        `grace_s` later it is killed.
        """
        if not self.is_alive:
            await self.start()
        self._send(task)
        kill_at: float | None = None
        timed_out = False
        while True:
            now = time.monotonic()
            if kill_at is None and (now >= deadline or should_cancel()):
                timed_out = now >= deadline
                self._ask_stop()
                kill_at = now + grace_s
            if kill_at is not None and now >= kill_at:
                self.kill()
                if timed_out:
                    raise RunTimedOut("the run did not finish before its deadline")
                raise GenerationFailed("the engine did not stop when asked and was killed")
            message = await self._receive(deadline=min(now + 0.25, kill_at or deadline + 1))
            if message is None:
                continue
            if isinstance(message, Progress | Log):
                on_event(message)
            elif isinstance(message, Done):
                return message
            elif isinstance(message, Failed):
                if timed_out and message.code == "canceled":
                    raise RunTimedOut("the run did not finish before its deadline")
                raise _failure_from(message)
            else:
                raise GenerationFailed(f"unexpected message from the engine: {message!r}")


class EngineProcess(EngineHost):
    """One child process holding one set-up engine; used by one worker at a time."""

    def __init__(self, settings: Settings, *, setup_timeout_s: float = 900.0) -> None:
        self._settings = settings
        self._setup_timeout_s = setup_timeout_s
        self._context = multiprocessing.get_context("spawn")
        self._process: BaseProcess | None = None
        self._conn: Connection | None = None
        self._stop: Event = self._context.Event()

    @property
    def is_alive(self) -> bool:
        return self._process is not None and self._process.is_alive()

    async def start(self) -> None:
        """Spawn the child and wait until its engine is set up."""
        parent_conn, child_conn = self._context.Pipe()
        process = self._context.Process(
            target=_child_main,
            args=(child_conn, self._stop, self._settings),
            name="runbase-engine",
            daemon=True,
        )
        process.start()
        child_conn.close()
        self._process, self._conn = process, parent_conn
        deadline = time.monotonic() + self._setup_timeout_s
        message = None
        while message is None and time.monotonic() < deadline:
            # In short waits: a canceled start (the worker stopping) leaves no thread
            # blocked on the pipe for the rest of a long set-up.
            message = await self._receive(deadline=min(deadline, time.monotonic() + 0.25))
        if isinstance(message, Ready):
            self.backend, self.notes = message.backend, message.notes
            return
        self.kill()
        detail = message.message if isinstance(message, SetupFailed) else "it exited"
        raise EngineUnavailable(f"no engine could be started: {detail}")

    def _send(self, task: RunTask) -> None:
        assert self._conn is not None
        self._stop.clear()
        self._conn.send(task)

    def _ask_stop(self) -> None:
        self._stop.set()

    async def _receive(self, *, deadline: float) -> object | None:
        """The child's next message, or None at the deadline; raises if the child died."""
        assert self._conn is not None and self._process is not None
        conn, process = self._conn, self._process
        timeout = max(0.0, deadline - time.monotonic())
        try:
            if not await asyncio.to_thread(conn.poll, timeout):
                if process.is_alive():
                    return None
                raise EOFError
            message: object = conn.recv()
            return message
        except (EOFError, OSError) as exc:
            process.join(timeout=1)
            code = process.exitcode
            self.kill()
            raise GenerationFailed(
                f"the engine process exited unexpectedly (exit code {code}); "
                "it may have run out of memory"
            ) from exc

    def kill(self) -> None:
        if self._process is not None and self._process.is_alive():
            self._process.kill()
            self._process.join(timeout=5)
        if self._conn is not None:
            self._conn.close()
        self._process, self._conn = None, None

    def close(self) -> None:
        """Ask the child to exit; kill it if it does not."""
        if self._conn is not None and self.is_alive:
            with contextlib.suppress(OSError):
                self._conn.send(None)
            assert self._process is not None
            self._process.join(timeout=5)
        self.kill()


def _failure_from(message: Failed) -> RunFailure:
    for cls in _all_subclasses(RunFailure):
        if cls.code == message.code:
            return cls(message.message)
    return GenerationFailed(message.message)


def _all_subclasses(cls: type[RunFailure]) -> list[type[RunFailure]]:
    found = []
    for sub in cls.__subclasses__():
        found.append(sub)
        found.extend(_all_subclasses(sub))
    return found


# ---- the child side -------------------------------------------------------------------


class _PipeProgress:
    """The engine's ProgressSink in the child: forwards to the parent, reads the stop flag."""

    def __init__(self, conn: Connection, stop: Event) -> None:
        self._conn, self._stop = conn, stop

    def progress(self, fraction: float, message: str = "") -> None:
        self._conn.send(Progress(float(fraction), message))

    def log(self, message: str) -> None:
        self._conn.send(Log(message))

    def should_stop(self) -> bool:
        return self._stop.is_set()


def set_up_engine(settings: Settings) -> tuple[Any, Ready | SetupFailed]:
    """Set up the first of `settings.engines` that starts (the engine, or None, and why)."""
    from runbase.engines import load_engine

    notes: list[str] = []
    for reference in settings.engines:
        try:
            engine = load_engine(reference, settings)
            engine.setup()
        except Exception as exc:
            notes.append(f"engine {reference!r} unavailable: {exc}")
            logger.warning("engine %s unavailable, trying the next one: %s", reference, exc)
            continue
        return engine, Ready(engine.name, tuple(notes))
    return None, SetupFailed("; ".join(notes) or "no engines configured")


def _child_main(conn: Connection, stop: Event, settings: Settings) -> None:
    logging.basicConfig(level=logging.INFO)
    engine, answer = set_up_engine(settings)
    conn.send(answer)
    if engine is None:
        return
    sink = _PipeProgress(conn, stop)
    while True:
        try:
            task = conn.recv()
        except EOFError:
            return
        if task is None:
            return
        conn.send(generate_run(engine, task, sink, settings))
        _release_memory()


def _release_memory() -> None:
    """Hand the finished run's buffers back to the system, after its answer is sent.

    glibc keeps what a program frees for reuse, in one arena per thread that allocated it
    (the preview engine renders in one thread and composes audio in another): without a
    trim, the engine process would keep a run's peak (frames, audio stems, encoder
    buffers) for good, about 100 MB after a 720p run.
    """
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        function: Callable[[int], int] = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc (macOS, musl): nothing to trim
        return None
    return function


def generate_run(
    engine: Any, task: RunTask, sink: ProgressSink, settings: Settings
) -> Done | Failed:
    """Render one run on a set-up engine, in the engine's host; never raises."""
    try:
        from runbase.core.catalog import find_model
        from runbase.engines.base import GenerationRequest

        if task.fail_with is not None:
            # Raised here, in the engine process, so that a test run fails exactly where
            # (and as) a real one would: through the pipe, the worker and the refund.
            raise _failure_from(
                Failed(task.fail_with, f"failed on purpose: the prompt asks for {task.fail_with}")
            )
        spec = find_model(task.model)
        images = _fetch_images(task.input.get("image_urls") or [], spec.max_image_bytes, settings)
        ratio = task.input.get("aspect_ratio")
        if ratio is None and images:
            ratio = spec.nearest_aspect_ratio(*images[0].size)
            sink.log(f"aspect ratio {ratio} chosen to match the first image")
        geometry = spec.output_geometry(task.input, ratio)
        seed = task.input.get("seed", -1)
        if seed == -1:
            seed = random.randrange(2**32)
            sink.log(f"seed {seed}")
        task.scratch_dir.mkdir(parents=True, exist_ok=True)
        request = GenerationRequest(
            run_id=task.run_id,
            model=task.model,
            input={**task.input, "aspect_ratio": ratio},
            width=geometry.width,
            height=geometry.height,
            num_frames=geometry.num_frames,
            fps=geometry.fps,
            audio=bool(task.input.get("generate_audio", True)),
            seed=seed,
            images=images,
            scratch_dir=task.scratch_dir,
        )
        result = engine.generate(request, sink)
        check_output(result.files[0] if result.files else None, request)
        if result.metadata:  # the engine's account of the run, kept in its logs
            details = json.dumps(result.metadata, ensure_ascii=False, default=str)
            sink.log(f"{engine.name} details: {details}")
        return Done(tuple(result.files))
    except RunFailure as failure:
        return Failed(failure.code, failure.message)
    except Exception:  # a bug: the traceback goes to the server log, plain words to the user
        logger.exception("engine failed on run %s", task.run_id)
        return Failed("generation_failed", "the engine failed unexpectedly while making the video")


def _fetch_images(urls: list[str], max_bytes: int, settings: Settings) -> tuple[Any, ...]:
    if not urls:
        return ()
    from runbase.media.images import FetchPolicy, fetch_image  # httpx: only runs with images

    policy = FetchPolicy(
        max_bytes=max_bytes, allow_private_hosts=settings.allow_private_image_hosts
    )
    return tuple(fetch_image(url, policy, index=index) for index, url in enumerate(urls))


def check_output(path: Path | None, request: Any) -> None:
    """Refuse an engine's video that breaks the contract, rather than serve it."""
    from runbase.media.probe import shape

    if path is None or not path.is_file():
        raise GenerationFailed("the engine wrote no video file")
    try:
        found = shape(path)
    except Exception as exc:
        raise GenerationFailed(f"the engine wrote an unreadable video: {exc}") from exc
    problems = []
    if not found.has_video:
        problems.append("no video stream")
    else:
        if (found.width, found.height) != (request.width, request.height):
            problems.append(f"size {found.width}x{found.height}")
        if found.num_frames != request.num_frames:
            problems.append(f"{found.num_frames} frames")
    if found.has_audio != request.audio:
        problems.append("an audio track" if found.has_audio else "no audio track")
    if problems:
        raise GenerationFailed(
            f"the engine wrote an invalid video ({', '.join(problems)}); expected "
            f"{request.width}x{request.height}, {request.num_frames} frames, "
            f"{'with' if request.audio else 'without'} audio"
        )


def remove_scratch(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
