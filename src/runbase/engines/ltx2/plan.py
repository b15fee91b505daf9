"""How one request is generated: the size the model accepts, the frame count, the recipe.

Pure arithmetic on the request and the options (no torch), so that the benchmark's dry run
and the tests can ask for a plan without a model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from runbase.engines.base import GenerationRequest
from runbase.engines.ltx2.options import SIZE_MULTIPLE, TEMPORAL_RATIO, LTX2Options

__all__ = ["LARGE_AREA", "TILED_VOLUME", "LTX2Plan", "generation_size", "make_plan"]

LARGE_AREA: Final = 1_500_000
"""Generations of at least this many pixels (1080p-sized) get the two-stage recipe under
"auto"; the largest 720p generation (1472x640) has 0.94 MP."""
TILED_VOLUME: Final = 150_000_000
"""Generations of at least this many pixels x frames are decoded in tiles under "auto".
The decoder's activations grow with area and frame count alike: every 1080p clip (202 M at
4 s) and 720p from 8 s on (174 M) are tiled; 720p at 4 s (87 M) and 480p up to 12 s
(132 M) decode whole."""


@dataclass(frozen=True)
class LTX2Plan:
    """How one request is generated."""

    width: int
    height: int
    """The generation size (multiples of SIZE_MULTIPLE); frames are resized after."""
    num_frames: int
    """Frames generated: the request's count rounded up to 8k + 1 (the extra are dropped)."""
    two_stage: bool
    tiled_decode: bool
    """Decode the video in spatial tiles and in overlapping runs of frames."""
    note: str | None = None
    """Why the recipe differs from what the options asked for (logged with the run)."""

    @property
    def stages(self) -> tuple[tuple[int, int, int], ...]:
        """(width, height, steps) of each denoising stage (steps for the distilled schedule)."""
        if self.two_stage:
            return ((self.width // 2, self.height // 2, 8), (self.width, self.height, 3))
        return ((self.width, self.height, 8),)


def make_plan(options: LTX2Options, request: GenerationRequest, *, upsampler: bool) -> LTX2Plan:
    """The generation size, frame count and recipe for `request` under `options`;
    `upsampler`: whether a latent upsampler is loaded (the two-stage recipe needs one)."""
    width, height = generation_size(
        request.width, request.height, max_side=options.max_generation_side
    )
    latent_steps = (request.num_frames - 1 + TEMPORAL_RATIO - 1) // TEMPORAL_RATIO
    num_frames = latent_steps * TEMPORAL_RATIO + 1
    large = width * height >= LARGE_AREA
    wanted = options.two_stage == "on" or (
        options.two_stage == "auto" and large and options.distilled
    )
    note = None
    if wanted and not upsampler:
        note = (
            f"generated in one stage: the two-stage recipe ({options.two_stage!r}) needs the "
            "latent upsampler, and none is loaded (set RUNBASE_LTX2_UPSAMPLER or add a "
            "latent_upsampler/ folder to the model)"
        )
    long_or_large = width * height * num_frames >= TILED_VOLUME
    return LTX2Plan(
        width=width,
        height=height,
        num_frames=num_frames,
        two_stage=wanted and upsampler,
        tiled_decode=options.vae_tiling == "on" or (options.vae_tiling == "auto" and long_or_large),
        note=note,
    )


def generation_size(
    width: int, height: int, *, multiple: int = SIZE_MULTIPLE, max_side: int | None = None
) -> tuple[int, int]:
    """The size to generate for an output of `width` x `height`.

    Each side is rounded down or up to a multiple of `multiple`; of the four candidates
    the one whose aspect ratio is nearest wins (so that the crop afterwards is smallest),
    and of equally near ones the larger (so that frames are shrunk rather than enlarged).
    `max_side` first scales the target down so that its longer side fits (a test knob).
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"size {width}x{height} must be positive")
    scale = 1.0 if max_side is None else min(1.0, max_side / max(width, height))
    target_w, target_h = width * scale, height * scale
    limit = None if max_side is None else max(max_side // multiple, 1)

    def sides(target: float) -> set[int]:
        units = {math.floor(target / multiple), math.ceil(target / multiple)}
        return {max(1, unit if limit is None else min(unit, limit)) for unit in units}

    target_ratio = math.log(width / height)
    best = min(
        ((w, h) for w in sides(target_w) for h in sides(target_h)),
        key=lambda wh: (round(abs(math.log(wh[0] / wh[1]) - target_ratio), 9), -wh[0] * wh[1]),
    )
    return best[0] * multiple, best[1] * multiple
