"""The seam between runbase and whatever makes the video.

An engine turns one `GenerationRequest` into files in the request's scratch directory. It
never touches the database or blob store: the worker uploads the files and records the
result. Engines run in a child process (`runbase.dispatch.executor`), so a crash or hang in
one cannot take the server down.

    Engine.setup()                      once per process: load weights, open clients
    Engine.generate(request, progress)  once per run -> GenerationResult (MP4 first)

Failures are raised as `runbase.errors.RunFailure` subclasses (`InvalidImage`,
`GenerationFailed`, `RunCanceled`); anything else is wrapped as `GenerationFailed`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["Engine", "GenerationRequest", "GenerationResult", "ProgressSink"]


@dataclass(frozen=True, kw_only=True)
class GenerationRequest:
    """Everything an engine needs for one run, already validated.

    `input` is the run's validated input with defaults filled in (for seedance-1.5-pro:
    prompt, aspect_ratio, resolution, duration, generate_audio, image_urls, and the optional
    seed and camera_fixed). The other fields are derived from it so that no engine has to
    know the contract's size table.
    """

    run_id: str
    model: str
    input: Mapping[str, Any]
    width: int
    height: int
    num_frames: int
    fps: int
    audio: bool
    seed: int
    """A concrete seed: the user's, or one drawn for them (never -1)."""
    images: tuple[Image.Image, ...] = ()
    """Fetched, checked and EXIF-rotated RGB images: first frame, then last frame."""
    scratch_dir: Path

    @property
    def prompt(self) -> str:
        return str(self.input.get("prompt", ""))

    @property
    def duration_seconds(self) -> float:
        return (self.num_frames - 1) / self.fps


class ProgressSink(Protocol):
    """Where an engine reports how far it got, and learns whether to stop."""

    def progress(self, fraction: float, message: str = "") -> None:
        """Report progress in [0, 1]; the message, if any, is shown as the run's stage."""

    def log(self, message: str) -> None:
        """Add a short line to the run's `logs` (something the user should know)."""

    def should_stop(self) -> bool:
        """True once the run is canceled or past its deadline: raise `RunCanceled` soon."""


@dataclass(frozen=True, kw_only=True)
class GenerationResult:
    """What an engine wrote: `files[0]` is the MP4; all lie in the scratch directory."""

    files: tuple[Path, ...]
    metadata: Mapping[str, Any] = field(default_factory=dict)
    """The engine's account of the run (what it drew, the steps it took...), JSON-able. The
    engine's host adds it to the run's logs as one line: `<engine> details: {...}`."""


class Engine(Protocol):
    """A backend that generates runs; `name` becomes the run's `backend`."""

    name: str

    def setup(self) -> None:
        """Load weights and open clients; called once per process, before any run."""

    def generate(self, request: GenerationRequest, progress: ProgressSink) -> GenerationResult:
        """Generate one run's files into `request.scratch_dir`."""
