"""Keyframes on any pixel frame: the last image of a first+last request on the last frame.

diffusers' `LTX2ConditionPipeline` reads `LTX2VideoCondition.index` as a *latent* index and
places a keyframe on pixel frame (index - 1) * 8 + 1; index -1 of a 97-frame clip is pixel
frame 89, 7 frames before the end, and no latent index reaches frame 96. A keyframe is
appended to the video tokens with its own positions, though, and its time is only those
positions (Lightricks' reference pipelines take keyframe indices in pixel frames for that
reason). `KeyframeCondition.pixel_frame` moves the keyframe's positions to the frame asked
for; everything else is diffusers' own.

Imports diffusers at module level: only `loading` and `conditioning` import this module,
inside the functions that need it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from diffusers import LTX2ConditionPipeline
from diffusers.pipelines.ltx2 import LTX2VideoCondition

__all__ = ["KeyframeCondition", "KeyframeConditionPipeline"]


@dataclass
class KeyframeCondition(LTX2VideoCondition):  # type: ignore[misc]
    """A single-image condition; `pixel_frame`, when set, is where its keyframe sits."""

    pixel_frame: int | None = None


class KeyframeConditionPipeline(LTX2ConditionPipeline):  # type: ignore[misc]
    """`LTX2ConditionPipeline` whose keyframes go to their conditions' `pixel_frame`."""

    def prepare_latents(self, **kwargs: Any) -> Any:
        # diffusers 0.42.1 passes every argument by keyword.
        latents, mask, clean, keyframe_coords = super().prepare_latents(**kwargs)
        if keyframe_coords is not None:
            _move_keyframes(
                keyframe_coords,
                kwargs.get("conditions") or [],
                num_frames=kwargs["num_frames"],
                fps=kwargs["frame_rate"],
                ratio=self.vae_temporal_compression_ratio,
            )
        return latents, mask, clean, keyframe_coords


def _move_keyframes(
    coords: Any, conditions: list[Any], *, num_frames: int, fps: float, ratio: int
) -> None:
    """Shift, in place, the time of each keyframe that has a `pixel_frame` to that frame.

    `coords` is (batch, 3, tokens, 2): per token, [start, end) on the time (in seconds),
    height and width axes; a keyframe's tokens all start at its pixel frame / fps.
    """
    latent_frames = (num_frames - 1) // ratio + 1
    for condition in conditions:
        wanted = getattr(condition, "pixel_frame", None)
        index = condition.index % latent_frames
        if wanted is None or index == 0:  # index 0 replaces the first frame: no keyframe
            continue
        placed = (index - 1) * ratio + 1
        starts = coords[:, 0, :, 0]
        own = (starts - placed / fps).abs() < 0.5 / fps
        coords[:, 0] += own.unsqueeze(-1).to(coords.dtype) * ((wanted - placed) / fps)
