"""Drawing primitives for the preview stages: gradients, glows, silhouettes, soft sprites.

Speed rule: anything smooth (sky gradients, glows, haze, clouds) is computed in float32 at a
quarter of the canvas size and scaled up once with Pillow's bilinear filter, where it looks
the same and costs a sixteenth. Only hard edges (skylines, trees, discs) are drawn at full
size. All of this happens once per clip; per-frame work lives in the stages' animators.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw

__all__ = [
    "RGB",
    "Animator",
    "FloatImage",
    "Stage",
    "View",
    "add_glow",
    "blob_alpha",
    "disc_alpha",
    "fill_below",
    "frame_rng",
    "lerp_colour",
    "soft_sprite",
    "to_image",
    "vertical_gradient",
]

RGB = tuple[int, int, int]
FloatImage = NDArray[np.float32]
"""An (h, w, 3) float32 image with values in 0..255."""

LOW_RES = 4
"""Smooth layers are computed at 1/LOW_RES of the canvas size."""


@dataclass(frozen=True)
class View:
    """Where the camera looks: canvas point (x, y) is the frame's top-left, zoomed by `scale`.

    Canvas point (cx, cy) lands on the frame at ((cx - x) * scale, (cy - y) * scale).
    """

    x: float
    y: float
    scale: float

    def to_frame(self, cx: float, cy: float) -> tuple[float, float]:
        return ((cx - self.x) * self.scale, (cy - self.y) * self.scale)


Animator = Callable[[Image.Image, ImageDraw.ImageDraw, View, float], None]
"""Draws a stage's moving parts on one frame, given the camera view and the time in seconds."""


@dataclass(frozen=True)
class Stage:
    """A scene ready to film: a static canvas (larger than the frame) and its moving parts."""

    background: Image.Image
    animators: tuple[Animator, ...] = ()


def frame_rng(seed: int, time: float) -> np.random.Generator:
    """A generator for one frame's random details (sparkles), the same on every run."""
    return np.random.default_rng([seed & 0xFFFFFFFF, round(time * 1000)])


def lerp_colour(a: Sequence[float], b: Sequence[float], amount: float) -> RGB:
    """The colour `amount` of the way from `a` to `b` (0 gives a, 1 gives b)."""
    r, g, bl = (round(x + (y - x) * amount) for x, y in zip(a, b, strict=True))
    return (int(r), int(g), int(bl))


def vertical_gradient(
    height: int, width: int, stops: Sequence[tuple[float, Sequence[float]]]
) -> FloatImage:
    """An (height, width, 3) image whose rows interpolate `stops` (position 0..1, colour).

    Built as one column and broadcast, then copied so later layers may draw on it.
    """
    positions = np.array([p for p, _ in stops], dtype=np.float32)
    colours = np.array([c for _, c in stops], dtype=np.float32)
    rows = np.linspace(0.0, 1.0, height, dtype=np.float32)
    column = np.stack([np.interp(rows, positions, colours[:, k]) for k in range(3)], axis=-1)
    return np.repeat(column[:, None, :].astype(np.float32), width, axis=1)


def add_glow(
    image: FloatImage,
    centre: tuple[float, float],
    radius: float,
    colour: Sequence[float],
    strength: float,
) -> None:
    """Screen-blend a soft radial glow (Gaussian falloff) into `image` in place."""
    height, width, _ = image.shape
    ys = np.arange(height, dtype=np.float32)[:, None] - np.float32(centre[1])
    xs = np.arange(width, dtype=np.float32)[None, :] - np.float32(centre[0])
    falloff = np.exp(-(xs * xs + ys * ys) / np.float32(2 * radius * radius)) * np.float32(strength)
    light = np.asarray(colour, dtype=np.float32)
    # Screen blend: 255 - (255 - a) * (255 - b * f) / 255 keeps bright areas from clipping hard.
    image[...] = 255 - (255 - image) * (255 - light * falloff[..., None]) / 255


def to_image(low: FloatImage, width: int, height: int) -> Image.Image:
    """Clip a (low-resolution) float image to uint8 and scale it to `width` x `height`."""
    pixels = np.clip(low + 0.5, 0, 255).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    if image.size != (width, height):
        image = image.resize((width, height), Image.Resampling.BILINEAR)
    return image


def fill_below(
    image: Image.Image, tops: NDArray[np.float32], colour: RGB, *, left: int = 0
) -> None:
    """Paint `colour` on `image` below the silhouette line `tops` (one y per column).

    Columns start at `left`; sub-pixel tops give a one-pixel antialiased edge, which keeps
    skylines from shimmering when the camera zooms with nearest-neighbour sampling.
    """
    height = image.height
    top = max(0, int(np.floor(tops.min())))
    if top >= height:
        return
    rows = np.arange(top, height, dtype=np.float32)[:, None]
    coverage = np.clip(rows - tops[None, :] + 1.0, 0.0, 1.0)
    mask = Image.fromarray((coverage * 255 + 0.5).astype(np.uint8), "L")
    image.paste(colour, (left, top, left + tops.shape[0], height), mask)


def soft_sprite(
    width: int,
    height: int,
    colour: RGB,
    alpha: NDArray[np.float32],
) -> Image.Image:
    """An RGBA sprite of one colour whose opacity is `alpha` (values 0..1, any size).

    `alpha` is scaled to the sprite size with a bilinear filter, so it may be low-res.
    """
    mask = Image.fromarray(np.clip(alpha * 255 + 0.5, 0, 255).astype(np.uint8), "L")
    if mask.size != (width, height):
        mask = mask.resize((width, height), Image.Resampling.BILINEAR)
    sprite = Image.new("RGBA", (width, height), (*colour, 0))
    sprite.putalpha(mask)
    return sprite


def blob_alpha(
    height: int, width: int, blobs: Sequence[tuple[float, float, float, float]]
) -> NDArray[np.float32]:
    """Opacity 0..1 of soft elliptic blobs (cx, cy, rx, ry in 0..1 units of the size)."""
    ys = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    xs = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :]
    total = np.zeros((height, width), dtype=np.float32)
    for cx, cy, rx, ry in blobs:
        d = ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2
        total += np.exp(-d * 2.0)
    clipped: NDArray[np.float32] = np.clip(total * np.float32(1.3), 0.0, 1.0)
    return clipped


def disc_alpha(size: int, radius: float, softness: float) -> NDArray[np.float32]:
    """Opacity of a disc of `radius` centred in a `size` square, edges `softness` px wide."""
    c = (size - 1) / 2
    ys = np.arange(size, dtype=np.float32)[:, None] - c
    xs = np.arange(size, dtype=np.float32)[None, :] - c
    distance = np.sqrt(xs * xs + ys * ys)
    edge = (np.float32(radius) - distance) / np.float32(max(softness, 0.5)) + np.float32(0.5)
    alpha: NDArray[np.float32] = np.clip(edge, 0.0, 1.0)
    return alpha
