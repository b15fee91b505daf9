"""Which pipeline each denoising stage runs, and with which images.

    request      stage 1 (or the only stage)         stage 2 (refining, full size)
    no image     text pipeline                       text pipeline
    one image    first-frame pipeline, image at      condition pipeline, the image encoded
                 the stage's size                    again at full size on frame 0
    two images   condition pipeline: first image on frame 0, last image on the clip's
                 last frame (keyframes.py), both at the stage's size

Stage 2 conditions again at full size because the first-frame pipeline, given latents,
keeps the upsampled half-size first frame and ignores its `image`; the condition pipeline
encodes its conditions whatever latents it is given.

Images are fitted (centre crop, then resize) to each stage's size here, so that no
pipeline stretches an image of another aspect ratio; cropping the output to the exact size
later keeps the result the image fitted to the output size.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from PIL import Image

__all__ = ["conditioning_kind", "stage_inputs"]


def conditioning_kind(images: tuple[Any, ...]) -> str:
    """ "text", "image" (first frame) or "frames" (first and last frames)."""
    return ("text", "image", "frames")[min(len(images), 2)]


def stage_inputs(
    kind: str,
    images: tuple[Image.Image, ...],
    *,
    width: int,
    height: int,
    refining: bool,
    last_frame: int,
) -> tuple[str, dict[str, Any]]:
    """The pipeline ("text", "image" or "frames") and image arguments of one stage of a
    `kind` request at `width` x `height`; `refining`: a stage that starts from latents;
    `last_frame`: the pixel frame the last image belongs on."""
    if kind == "text":
        return "text", {}
    from PIL import Image as PILImage

    from runbase.media.images import fit_image

    fitted = [PILImage.fromarray(fit_image(image, width, height)) for image in images[:2]]
    if kind == "image" and not refining:
        return "image", {"image": fitted[0]}
    from runbase.engines.ltx2.keyframes import KeyframeCondition

    conditions = [KeyframeCondition(frames=fitted[0], index=0)]
    if kind == "frames":
        conditions.append(KeyframeCondition(frames=fitted[1], index=-1, pixel_frame=last_frame))
    return "frames", {"conditions": conditions}
