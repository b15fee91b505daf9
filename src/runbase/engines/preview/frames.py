"""Preview frames: a camera over a procedural stage, or over the user's images.

A `Film` paints picture `index` of a clip (a Pillow image); `Overlays.finish` adds the
subtitle and the PREVIEW mark and hands back the (height, width, 3) uint8 RGB frame. Frames
are independent of each other, so the same index always gives the same pixels.

Speed (the whole point of this module: rendering must hide behind the H.264 encoder):
1. The stage is painted once on a canvas larger than the frame.
2. Pans and tilts are integer crops of that canvas (a copy, ~0.3 ms at 720p); zooms are a
   nearest-neighbour resize of the camera box (~0.5 ms). Bilinear would cost ~8 ms a frame
   at 720p, as much as the encoder. The box is at most ~1.5x the frame, so nearest
   sampling moves an edge by at most a pixel; skylines and hills have antialiased tops, and
   x264 does not spend more bits on this content than on a bilinear zoom (measured).
3. Moving parts, the subtitle and the mark are small pastes and draws on the frame.
4. The frame leaves Pillow with a single copy (`export_rgb`).

Image clips (one image: the camera moves over it; two: a dissolve from the first to the
last) use bilinear resampling, as photos show nearest-neighbour steps. Their first frame
is exactly the fitted first image and the last frame of a two-image clip is exactly the
fitted second image, apart from the overlays:
- The PREVIEW mark is on every frame, image clips included. It is small (2.6% of the short
  side) and faint (white at ~40%): even on a flat black image, the worst case, the first
  and last frames stay near 40 dB PSNR (photos: ~36 dB, the encoder's own loss).
- Subtitles are never drawn on the first or the last frame of any clip: a caption covers
  far more pixels than the mark and would break first/last-frame fidelity, and one frame
  (42 ms) without it is invisible.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFilter

from .layers import Stage, View
from .outdoor import build_sea, build_sky
from .overlays import Sprite, SubtitleTrack, TimedText, render_mark
from .places import build_city, build_forest
from .scene import Scene
from .studio import build_abstract, build_interior

__all__ = ["Film", "Frame", "Overlays", "export_rgb", "film_images", "film_scene", "plan_camera"]

Frame = NDArray[np.uint8]

_STAGE_BUILDERS: dict[str, Callable[[Scene, int, int], Stage]] = {
    "sky": build_sky,
    "sea": build_sea,
    "city": build_city,
    "forest": build_forest,
    "interior": build_interior,
    "abstract": build_abstract,
}


class Film(Protocol):
    """A clip that can paint any of its pictures on demand (without overlays)."""

    @property
    def num_frames(self) -> int: ...

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of every picture."""

    def picture(self, index: int) -> Image.Image: ...


def _ease(p: float) -> float:
    """Smoothstep: the camera starts and stops gently, as a real operator would."""
    p = min(max(p, 0.0), 1.0)
    return p * p * (3 - 2 * p)


def _travel(duration: float) -> float:
    """How far the camera travels, as a fraction of the frame: longer clips go further."""
    return min(0.1 + 0.02 * duration, 0.36)


@dataclass(frozen=True)
class Overlays:
    """What goes on top of every frame: the PREVIEW mark and the subtitles."""

    mark: Sprite
    subtitles: SubtitleTrack
    num_frames: int
    fps: int

    @classmethod
    def build(
        cls, width: int, height: int, num_frames: int, fps: int, lines: Sequence[TimedText]
    ) -> Overlays:
        return cls(render_mark(width, height), SubtitleTrack(lines, width, height), num_frames, fps)

    def finish(self, frame: Image.Image, index: int) -> Frame:
        """Paste the subtitle (never on the first or last frame) and the mark; to numpy."""
        if 0 < index < self.num_frames - 1:
            sprite = self.subtitles.sprite_at(index / self.fps)
            if sprite is not None:
                sprite.paste_onto(frame)
        self.mark.paste_onto(frame)
        return export_rgb(frame)


def export_rgb(image: Image.Image) -> Frame:
    """The RGB pixels of `image` as an (h, w, 3) array, copied once.

    `np.asarray(image)` goes through `tobytes`, which packs the pixels in 64 KiB chunks and
    then joins them: a second full copy (~0.9 ms a 720p frame, a third of the render). One
    raw-encoder call with a buffer of the whole image packs them straight into the bytes
    that numpy then wraps. Should Pillow ever answer differently, fall back to the slow way.
    """
    width, height = image.size
    size = width * height * 3
    if image.mode != "RGB" or size == 0:
        return np.asarray(image.convert("RGB"))
    encoder = Image._getencoder("RGB", "raw", "RGB")
    try:
        encoder.setimage(image.im, (0, 0, width, height))
        _, status, data = encoder.encode(size)
    finally:
        encoder.cleanup()
    if status != 1 or len(data) != size:
        return np.asarray(image)
    return np.frombuffer(data, dtype=np.uint8).reshape(height, width, 3)


@dataclass(frozen=True)
class CameraPath:
    """The camera box over a canvas: top-left (x, y) and width, as functions of progress.

    The box keeps the frame's aspect ratio; its width is never below the frame width, so
    frames are crops (scale 1) or shrinks (scale < 1), never blurry enlargements.
    """

    canvas: tuple[int, int]
    frame: tuple[int, int]
    box: Callable[[float], tuple[float, float, float]]

    def view_at(self, progress: float) -> View:
        x, y, box_w = self.box(_ease(progress))
        width = self.frame[0]
        if abs(box_w - width) < 1e-6:
            return View(float(round(x)), float(round(y)), 1.0)
        return View(x, y, width / box_w)


def plan_camera(move: str, width: int, height: int, duration: float) -> CameraPath:
    """The canvas size and camera box for a camera `move` (see `scene.CAMERA_MOVES`)."""
    f = _travel(duration)
    if move in ("pan_left", "pan_right"):
        span = round(width * f)
        sign = 1 if move == "pan_right" else -1
        return CameraPath(
            (width + span, height),
            (width, height),
            lambda p: (span * (p if sign > 0 else 1 - p), 0.0, float(width)),
        )
    if move in ("tilt_up", "tilt_down"):
        span = round(height * f)
        return CameraPath(
            (width, height + span),
            (width, height),
            lambda p: (0.0, span * (1 - p if move == "tilt_up" else p), float(width)),
        )
    if move in ("zoom_in", "zoom_out", "dolly_in", "dolly_out"):
        zoom = 1 + (f if move.startswith("zoom") else 1.5 * f)
        canvas = (math.ceil(width * zoom), math.ceil(height * zoom))
        aim_y = 0.5 if move.startswith("zoom") else 0.6  # a dolly moves towards the ground

        def zoom_box(p: float) -> tuple[float, float, float]:
            q = p if move.endswith("_in") else 1 - p
            box_w = width * (zoom + (1 - zoom) * q)
            box_h = box_w * height / width
            return ((canvas[0] - box_w) / 2, (canvas[1] - box_h) * aim_y, box_w)

        return CameraPath(canvas, (width, height), zoom_box)
    if move == "orbit":
        canvas = (math.ceil(width * (1 + f)), math.ceil(height * (1 + f / 2)))

        def orbit_box(p: float) -> tuple[float, float, float]:
            box_w = width * (1 + f / 2 - f / 2 * math.sin(math.pi * p))
            box_h = box_w * height / width
            return ((canvas[0] - box_w) * p, (canvas[1] - box_h) / 2, box_w)

        return CameraPath(canvas, (width, height), orbit_box)
    return CameraPath((width, height), (width, height), lambda p: (0.0, 0.0, float(width)))


class StageFilm:
    """A text-to-video clip: the camera path over a procedural stage."""

    def __init__(self, scene: Scene, width: int, height: int, num_frames: int, fps: int) -> None:
        self.num_frames = num_frames
        self.size = (width, height)
        self._fps = fps
        duration = (num_frames - 1) / fps
        self.camera = plan_camera(scene.camera, width, height, duration)
        self.stage = _STAGE_BUILDERS[scene.kind](scene, *self.camera.canvas)
        # Monochrome is applied to the finished picture, so that the few fixed colours of
        # the moving parts (car lights, lit windows) lose their colour too.
        self._monochrome = "monochrome" in scene.colours

    def picture(self, index: int) -> Image.Image:
        progress = index / (self.num_frames - 1) if self.num_frames > 1 else 0.0
        view = self.camera.view_at(progress)
        width, height = self.size
        background = self.stage.background
        if view.scale == 1.0:
            x, y = int(view.x), int(view.y)
            frame = background.crop((x, y, x + width, y + height))
        else:
            box = (view.x, view.y, view.x + width / view.scale, view.y + height / view.scale)
            frame = background.resize(self.size, Image.Resampling.NEAREST, box=box)
        draw = ImageDraw.Draw(frame)
        for animate in self.stage.animators:
            animate(frame, draw, view, index / self._fps)
        if self._monochrome:
            frame = frame.convert("L").convert("RGB")
        return frame


def film_scene(scene: Scene, width: int, height: int, num_frames: int, fps: int) -> Film:
    """The text-to-video film of `scene`: paints the stage now, frames on demand."""
    return StageFilm(scene, width, height, num_frames, fps)


class StillFilm:
    """One image: the camera drifts over it; frame 0 is exactly the fitted image.

    Zoom in (the default), pans and tilts close in on the middle or a side; zoom out and
    dolly out shrink the image into a blurred, dimmed copy of itself; static holds still.
    """

    def __init__(self, fitted: Frame, camera: str, num_frames: int, duration: float) -> None:
        self.num_frames = num_frames
        self._image = Image.fromarray(fitted, "RGB")
        self.size = self._image.size
        self._camera = camera
        self._zoom = 1 + 0.5 * _travel(duration) * (1.5 if camera.startswith("dolly") else 1.0)
        self._backdrop: Image.Image | None = None
        if camera in ("zoom_out", "dolly_out"):
            w, h = self._image.size
            small = self._image.resize((max(1, w // 8), max(1, h // 8)), Image.Resampling.BILINEAR)
            blurred = small.filter(ImageFilter.GaussianBlur(2)).resize(
                (w, h), Image.Resampling.BILINEAR
            )
            self._backdrop = Image.eval(blurred, lambda v: v * 3 // 5)

    def picture(self, index: int) -> Image.Image:
        p = _ease(index / (self.num_frames - 1)) if self.num_frames > 1 else 0.0
        image = self._image
        if p == 0.0 or self._camera == "static":
            return image.copy()
        w, h = image.size
        if self._backdrop is not None:
            scale = 1 + (1 / self._zoom - 1) * p
            size = (max(1, round(w * scale)), max(1, round(h * scale)))
            frame = self._backdrop.copy()
            frame.paste(
                image.resize(size, Image.Resampling.BILINEAR),
                ((w - size[0]) // 2, (h - size[1]) // 2),
            )
            return frame
        return image.resize(
            (w, h), Image.Resampling.BILINEAR, box=_closing_box(self._camera, w, h, self._zoom, p)
        )


def _closing_box(
    move: str, w: int, h: int, zoom: float, p: float
) -> tuple[float, float, float, float]:
    """The box that closes in from the whole image (p=0) to 1/zoom of it (p=1).

    Where it ends depends on the move: the middle for a zoom or dolly, a side for a pan or
    tilt (pan right ends on the right side; an orbit drifts right too).
    """
    box_w, box_h = w / zoom, h / zoom
    anchor_x = {"pan_left": 0.0, "pan_right": 1.0, "orbit": 1.0}.get(move, 0.5)
    anchor_y = {"tilt_up": 0.0, "tilt_down": 1.0}.get(move, 0.5)
    end = ((w - box_w) * anchor_x, (h - box_h) * anchor_y, box_w, box_h)
    x, y, bw, bh = (full + (e - full) * p for full, e in zip((0.0, 0.0, w, h), end, strict=True))
    return (x, y, x + bw, y + bh)


class MorphFilm:
    """Two images: the first closes in slightly while it dissolves into the second.

    The second settles from slightly zoomed to its full frame, so the first frame is
    exactly the fitted first image and the last frame exactly the fitted second image.
    """

    def __init__(
        self, first: Frame, last: Frame, camera: str, num_frames: int, duration: float
    ) -> None:
        self.num_frames = num_frames
        self._first = Image.fromarray(first, "RGB")
        self.size = self._first.size
        self._last = Image.fromarray(last, "RGB")
        self._camera = camera
        self._zoom = 1 + 0.3 * _travel(duration)

    def picture(self, index: int) -> Image.Image:
        p = index / (self.num_frames - 1) if self.num_frames > 1 else 0.0
        blend = _ease((p - 0.15) / 0.7)
        if blend <= 0.0:
            frame = self._moved(self._first, _ease(p))
        elif blend >= 1.0:
            frame = self._moved(self._last, 1 - _ease(p))
        else:
            first = self._moved(self._first, _ease(p))
            frame = Image.blend(first, self._moved(self._last, 1 - _ease(p)), blend)
        return frame

    def _moved(self, image: Image.Image, p: float) -> Image.Image:
        if p <= 0.0 or self._camera == "static":
            return image.copy()
        w, h = image.size
        move = "zoom_in" if self._camera in ("zoom_out", "dolly_out", "dolly_in") else self._camera
        return image.resize(
            (w, h), Image.Resampling.BILINEAR, box=_closing_box(move, w, h, self._zoom, p)
        )


def film_images(fitted: Sequence[Frame], camera: str, num_frames: int, fps: int) -> Film:
    """The image-to-video film: one fitted image, or the first and the last frame."""
    duration = (num_frames - 1) / fps
    if len(fitted) >= 2:
        return MorphFilm(fitted[0], fitted[1], camera, num_frames, duration)
    return StillFilm(fitted[0], camera, num_frames, duration)
