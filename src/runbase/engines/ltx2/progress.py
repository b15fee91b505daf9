"""Progress and stopping inside one LTX-2 generation.

Denoising reports 5-85 % (weighted by each stage's work), encoding the rest; a stop
request is honoured between steps, between stages and between batches of frames.
"""

from __future__ import annotations

from typing import Any, Final

from runbase.engines.base import ProgressSink
from runbase.errors import RunCanceled

__all__ = ["DENOISE_END", "DENOISE_START", "Stopped", "check_stop", "step_callback"]

DENOISE_START: Final = 0.05
DENOISE_END: Final = 0.85


class Stopped(Exception):
    """Raised from the step callback to leave the denoising loop at once."""


def check_stop(progress: ProgressSink) -> None:
    if progress.should_stop():
        raise RunCanceled()


def step_callback(progress: ProgressSink, start: float, span: float, steps: int) -> Any:
    """A `callback_on_step_end` that reports progress and stops the loop when told to."""

    def on_step_end(
        pipeline: Any, step: int, timestep: Any, tensors: dict[str, Any]
    ) -> dict[str, Any]:
        if progress.should_stop():
            # diffusers' own flag skips the remaining steps but would still decode the
            # whole video; raising leaves at once.
            pipeline._interrupt = True
            raise Stopped()
        progress.progress(round(start + span * (step + 1) / steps, 4), "denoising")
        return {}

    return on_step_end
