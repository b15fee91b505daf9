"""Engines in Ray actors (`RUNBASE_EXECUTOR=ray`): Ray places them, the worker drives them.

Each worker (in `runbase serve` or `runbase dispatcher`) keeps one `EngineActor` on the
cluster at `RUNBASE_RAY_ADDRESS`, asking Ray for `RUNBASE_RAY_NUM_CPUS` and
`RUNBASE_RAY_NUM_GPUS` (default: 1 for a GPU engine). The actor sets its engine up once and
keeps it loaded between runs. Everything else stays with the worker: claim, heartbeat,
cancel and deadline, the final write and the refund (`dispatch/worker.py`).

    worker (RayEngine)                      actor (EngineActor, a threaded Ray actor)
      setup.remote()          ------->      set_up_engine()  -> Ready | SetupFailed
      generate.remote(task)   ------->      generate_run() in the actor's scratch dir
      drain.remote() 4x a second  <---      Progress | Log lines since the last drain
      stop.remote(run_id)     ------->      the engine's should_stop() turns true
      ray.kill(actor)                       after the grace period; a new actor next run

Outputs: with S3 storage (`RUNBASE_STORAGE_URL=s3://...`) the actor uploads the files
itself, so that video bytes never cross the cluster twice; the actor's node then needs S3
credentials. With the local blob store the bytes come back through Ray's object store and
the worker stores them as usual, so an actor on another node still writes to the right
disk.

A dead actor (its process killed, its node lost) raises `EngineLost`: the worker gives up
the run's lease and the reaper retries the run (on a new actor) or fails it with
`worker_lost`, refunded. Ray is an optional extra: `pip install 'runbase[ray]'`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from runbase.config import Settings
from runbase.dispatch.executor import (
    Done,
    EngineHost,
    EngineLost,
    Failed,
    Log,
    Progress,
    Ready,
    RunTask,
    SetupFailed,
    generate_run,
    output_key,
    set_up_engine,
)
from runbase.errors import EngineUnavailable
from runbase.storage.blobs import BlobStore, open_blob_store

try:
    import ray
    from ray.exceptions import RayError
except ImportError as exc:  # pragma: no cover - depends on the install
    raise RuntimeError(
        "RUNBASE_EXECUTOR=ray needs Ray: pip install 'runbase[ray]' (or set RUNBASE_EXECUTOR=local)"
    ) from exc

__all__ = ["EngineActor", "RayEngine", "connect_ray", "default_num_gpus", "disconnect_ray"]

_POLL_S = 0.25
_CALL_TIMEOUT_S = 30.0  # an actor that cannot answer a small call for this long is lost
_connect_lock = threading.Lock()


def connect_ray(settings: Settings) -> None:
    """Join the cluster at `settings.ray_address` once per process (or start a local one)."""
    with _connect_lock:
        if ray.is_initialized():
            return
        ray.init(
            address=settings.ray_address,
            namespace="runbase",
            include_dashboard=False,  # used only when Ray starts a local cluster
            configure_logging=False,
            log_to_driver=False,  # actors' output stays in Ray's logs, not in the server's
        )


def disconnect_ray() -> None:
    """Leave the cluster (stopping a local one) once the workers have closed their actors:
    here, on the main thread, rather than in Ray's own exit handler during interpreter
    teardown, which first sleeps half a second."""
    with _connect_lock:
        if ray.is_initialized():
            ray.shutdown()


def _restore_signal_handlers() -> None:
    """Give SIGTERM back to Python's handler (the worker's graceful stop, or uvicorn's).

    Ray's core installs a crash reporter for SIGTERM when it connects: it prints a stack
    trace as for a crash, then passes the signal on. A planned stop is not a crash.
    """
    if threading.current_thread() is threading.main_thread():
        handler = signal.getsignal(signal.SIGTERM)
        if handler is not None:
            signal.signal(signal.SIGTERM, handler)


def default_num_gpus(settings: Settings) -> float:
    """GPUs an engine actor needs: LTX-2 on CUDA one per context-parallel rank (1 unless
    `ltx2_context_parallel` says more), preview, ark and others none."""
    if settings.ray_num_gpus is not None:
        return settings.ray_num_gpus
    first = settings.engines[0] if settings.engines else ""
    if first == "ltx2" and settings.ltx2_device.startswith("cuda"):
        return float(settings.ltx2_context_parallel)
    return 0.0


@dataclass(frozen=True)
class ShippedFiles:
    """Outputs carried back through Ray's object store (local blob store): name, bytes."""

    files: tuple[tuple[str, bytes], ...]


class EngineActor:
    """One set-up engine in a Ray worker process; runs one generation at a time.

    Created with `max_concurrency` > 1 so that `drain` and `stop` are answered while
    `generate` works in another thread. It is also the engine's ProgressSink.
    """

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._engine: Any = None
        self._events: deque[Progress | Log] = deque()
        self._current: str | None = None
        self._stopped: str | None = None
        self._scratch_root = Path(tempfile.mkdtemp(prefix="runbase-actor-"))
        self._store: BlobStore | None = None  # opened for the first S3 upload

    def setup(self) -> Ready | SetupFailed:
        engine, answer = set_up_engine(self._settings)
        self._engine = engine
        return answer

    def generate(self, task: RunTask) -> Done | Failed | ShippedFiles:
        self._current = task.run_id
        self._events.clear()
        # Which actor rendered the run: operators find its process and Ray logs by this.
        node = ray.get_runtime_context().get_node_id()[:12]
        self.log(f"engine actor pid {os.getpid()} on node {node}")
        scratch = self._scratch_root / task.run_id
        try:
            outcome = generate_run(
                self._engine, replace(task, scratch_dir=scratch), self, self._settings
            )
            if isinstance(outcome, Failed):
                return outcome
            return self._deliver(task.run_id, outcome)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)

    def _deliver(self, run_id: str, done: Done) -> Done | Failed | ShippedFiles:
        if not self._settings.storage_url:
            shipped = tuple((path.name, path.read_bytes()) for path in done.files)
            return ShippedFiles(shipped)
        try:
            if self._store is None:
                self._store = open_blob_store(self._settings)
            keys = []
            for path in done.files:
                asyncio.run(self._store.put_file(output_key(run_id, path), path))
                keys.append(output_key(run_id, path))
        except Exception as exc:
            return Failed("generation_failed", f"storing the output failed: {exc}")
        return Done((), stored_keys=tuple(keys))

    def drain(self) -> list[Progress | Log]:
        events = []
        while self._events:
            events.append(self._events.popleft())
        return events

    def stop(self, run_id: str) -> None:
        self._stopped = run_id

    # The engine's ProgressSink.
    def progress(self, fraction: float, message: str = "") -> None:
        self._events.append(Progress(float(fraction), message))

    def log(self, message: str) -> None:
        self._events.append(Log(message))

    def should_stop(self) -> bool:
        return self._stopped is not None and self._stopped == self._current


class RayEngine(EngineHost):
    """A worker's handle on its engine actor; a new actor replaces one that died."""

    def __init__(self, settings: Settings, *, setup_timeout_s: float = 900.0) -> None:
        self._settings = settings
        self._setup_timeout_s = setup_timeout_s
        self._actor: Any = None
        self._generation: Any = None  # the running generate call's future
        self._run_id: str | None = None
        self._scratch: Path | None = None
        self._inbox: deque[object] = deque()

    @property
    def is_alive(self) -> bool:
        return self._actor is not None

    async def start(self) -> None:
        await asyncio.to_thread(connect_ray, self._settings)
        _restore_signal_handlers()
        actor_class = ray.remote(EngineActor).options(
            num_cpus=self._settings.ray_num_cpus,
            num_gpus=default_num_gpus(self._settings),
            max_concurrency=4,
        )
        self._actor = actor_class.remote(self._settings)
        try:
            # Placement waits for free resources on the cluster, then the engine loads.
            answer = await self._call(self._actor.setup.remote(), timeout=self._setup_timeout_s)
        except TimeoutError as exc:
            self.kill()
            raise EngineUnavailable(
                f"no engine actor started within {self._setup_timeout_s:.0f} s; "
                "does the Ray cluster have the CPUs and GPUs it asks for?"
            ) from exc
        except EngineLost:
            self.kill()
            raise
        if isinstance(answer, Ready):
            self.backend, self.notes = answer.backend, answer.notes
            return
        self.kill()
        detail = answer.message if isinstance(answer, SetupFailed) else repr(answer)
        raise EngineUnavailable(f"no engine could be started: {detail}")

    def _send(self, task: RunTask) -> None:
        assert self._actor is not None
        self._inbox.clear()
        self._run_id, self._scratch = task.run_id, task.scratch_dir
        self._generation = asyncio.wrap_future(self._actor.generate.remote(task).future())

    def _ask_stop(self) -> None:
        if self._actor is not None and self._run_id is not None:
            self._actor.stop.remote(self._run_id)

    async def _receive(self, *, deadline: float) -> object | None:
        if not self._inbox:
            await self._fetch(timeout=max(0.0, min(_POLL_S, deadline - time.monotonic())))
        return self._inbox.popleft() if self._inbox else None

    async def _fetch(self, *, timeout: float) -> None:
        """Wait a little for the run to end, then collect its progress (and its outcome)."""
        generation = self._generation
        assert generation is not None and self._actor is not None
        await asyncio.wait([generation], timeout=timeout)
        try:
            self._inbox.extend(
                await self._call(self._actor.drain.remote(), timeout=_CALL_TIMEOUT_S)
            )
        except TimeoutError as exc:
            self.kill()
            raise EngineLost("the engine's Ray actor stopped answering") from exc
        if not generation.done():
            return
        self._generation = None
        try:
            outcome = generation.result()
        except RayError as exc:
            self.kill()
            raise EngineLost("the engine's Ray actor was lost") from exc
        if isinstance(outcome, ShippedFiles):
            outcome = await asyncio.to_thread(self._unpack, outcome)
        self._inbox.append(outcome)

    def _unpack(self, shipped: ShippedFiles) -> Done:
        assert self._scratch is not None
        self._scratch.mkdir(parents=True, exist_ok=True)
        paths = []
        for name, content in shipped.files:
            path = self._scratch / Path(name).name
            path.write_bytes(content)
            paths.append(path)
        return Done(tuple(paths))

    async def _call(self, ref: Any, *, timeout: float) -> Any:
        """An actor call's answer; `EngineLost` when the actor died, TimeoutError past
        `timeout`."""
        try:
            return await asyncio.wait_for(asyncio.wrap_future(ref.future()), timeout)
        except RayError as exc:
            self.kill()
            raise EngineLost("the engine's Ray actor was lost") from exc

    def kill(self) -> None:
        if self._actor is not None:
            with contextlib.suppress(RayError):  # already gone
                ray.kill(self._actor, no_restart=True)
        if self._generation is not None:
            self._generation.cancel()
        self._actor, self._generation = None, None

    def close(self) -> None:
        self.kill()
