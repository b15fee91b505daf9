"""Small real engines for tests, one per behaviour or failure mode (cog's fixture models).

They are loaded by import reference (`engine_fixtures:QuickEngine`) in the engine child
process, exactly like a real engine; `pyproject.toml` puts `tests/` on the path.
"""

from __future__ import annotations

import hashlib
import os
import sys
import time

import numpy as np

from runbase.engines.base import GenerationRequest, GenerationResult, ProgressSink
from runbase.engines.preview import PreviewEngine
from runbase.errors import GenerationFailed, RunCanceled
from runbase.media.video import write_mp4


def write_flat_video(
    request: GenerationRequest, *, num_frames: int | None = None
) -> GenerationResult:
    """A real MP4 of the request's geometry: flat grey frames, a quiet tone if audio is on."""
    frame = np.full((request.height, request.width, 3), 96, dtype=np.uint8)
    count = request.num_frames if num_frames is None else num_frames
    audio = None
    if request.audio:
        t = np.arange(int(request.duration_seconds * 48_000)) / 48_000
        tone = (0.1 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
        audio = np.stack([tone, tone])
    path = request.scratch_dir / "output.mp4"
    write_mp4(
        path,
        (frame for _ in range(count)),
        width=request.width,
        height=request.height,
        fps=request.fps,
        num_frames=count,
        audio=audio,
        preset="ultrafast",
    )
    return GenerationResult(files=(path,), metadata={"fixture": True})


class QuickEngine:
    """Succeeds at once with a valid video."""

    name = "quick"

    def setup(self) -> None:
        pass

    def generate(self, request: GenerationRequest, progress: ProgressSink) -> GenerationResult:
        progress.progress(0.5, "rendering")
        return write_flat_video(request)


class SlowEngine(QuickEngine):
    """Takes RUNBASE_TEST_ENGINE_SECONDS (default 1.5 s), reporting progress; stops when asked."""

    name = "slow"

    def generate(self, request: GenerationRequest, progress: ProgressSink) -> GenerationResult:
        seconds = float(os.environ.get("RUNBASE_TEST_ENGINE_SECONDS", "1.5"))
        steps = 10
        for step in range(steps):
            if progress.should_stop():
                raise RunCanceled()
            progress.progress(step / steps, f"step {step + 1} of {steps}")
            time.sleep(seconds / steps)
        progress.log("slow engine finished")
        return write_flat_video(request)


class EarlyLogEngine(QuickEngine):
    """Logs a line at once, then takes RUNBASE_TEST_ENGINE_SECONDS (default 1.5 s)."""

    name = "early-log"

    def generate(self, request: GenerationRequest, progress: ProgressSink) -> GenerationResult:
        progress.log("early line")
        time.sleep(float(os.environ.get("RUNBASE_TEST_ENGINE_SECONDS", "1.5")))
        return write_flat_video(request)


class InputEchoEngine(QuickEngine):
    """Succeeds, logging the SHA-256 of each `image_urls` entry exactly as it received it
    (what a provider engine would send upstream)."""

    name = "echo"

    def generate(self, request: GenerationRequest, progress: ProgressSink) -> GenerationResult:
        for url in request.input.get("image_urls") or []:
            progress.log("image_urls sha256 " + hashlib.sha256(url.encode()).hexdigest())
        return write_flat_video(request)


class FailingEngine(QuickEngine):
    """The model fails: a GenerationFailed with a message."""

    name = "failing"

    def generate(self, request: GenerationRequest, progress: ProgressSink) -> GenerationResult:
        raise GenerationFailed("the fixture model refused to generate")


class BuggyEngine(QuickEngine):
    """An unexpected exception inside the engine."""

    name = "buggy"

    def generate(self, request: GenerationRequest, progress: ProgressSink) -> GenerationResult:
        raise ZeroDivisionError("division by zero in the fixture")


class CrashingEngine(QuickEngine):
    """The engine process dies mid-run (as on an out-of-memory kill)."""

    name = "crashing"

    def generate(self, request: GenerationRequest, progress: ProgressSink) -> GenerationResult:
        progress.progress(0.1)
        os._exit(3)


class HangingEngine(QuickEngine):
    """Never finishes and ignores requests to stop."""

    name = "hanging"

    def generate(self, request: GenerationRequest, progress: ProgressSink) -> GenerationResult:
        while True:
            time.sleep(0.1)


class BadFileEngine(QuickEngine):
    """Writes a video with the wrong number of frames."""

    name = "badfile"

    def generate(self, request: GenerationRequest, progress: ProgressSink) -> GenerationResult:
        return write_flat_video(request, num_frames=request.num_frames - 1)


class SlowSetupEngine(QuickEngine):
    """Takes a minute to set up (as a large model's weights do)."""

    name = "slow-setup"

    def setup(self) -> None:
        time.sleep(60)


class BrokenSetupEngine(QuickEngine):
    """Cannot start (as when weights or a GPU are missing)."""

    name = "broken"

    def setup(self) -> None:
        raise RuntimeError("weights not found at /nowhere")


WATCHED_MODULES = (
    "fastapi",
    "starlette",
    "uvicorn",
    "sqlalchemy",
    "alembic",
    "typer",
    "runbase.cli",
    "runbase.http",
    "scipy",
    "pyloudnorm",
    "httpx",
)
"""Modules an engine process has no use for on a text-to-video run: the server's, and the
heavy ones the preview engine once pulled in."""


class ImportsEngine(PreviewEngine):
    """The preview engine; after a run it logs which WATCHED_MODULES its process holds."""

    def __init__(self) -> None:
        super().__init__(preset="superfast")

    def generate(self, request: GenerationRequest, progress: ProgressSink) -> GenerationResult:
        result = super().generate(request, progress)
        loaded = [name for name in WATCHED_MODULES if name in sys.modules]
        progress.log(f"engine process holds: {', '.join(loaded) or 'none of them'}")
        return result


class Idle:
    """Not an engine: a Ray actor that only holds the resources it was given."""

    def ping(self) -> int:
        return 1
