"""Open-air stages: the procedural sky every outdoor stage shares, the sky and the sea.

Each builder paints a static canvas once (see `layers` for the speed rules) and returns the
animators that move things on every frame: drifting clouds and birds, rolling sea bands and
sun glitter, twinkling stars. Animators draw in frame space through the camera `View` and
touch only small regions, so a 720p frame costs a millisecond or two on top of the crop.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw

from .layers import (
    Animator,
    Stage,
    View,
    add_glow,
    blob_alpha,
    disc_alpha,
    fill_below,
    frame_rng,
    lerp_colour,
    soft_sprite,
    to_image,
    vertical_gradient,
)
from .scene import Scene

__all__ = ["build_sea", "build_sky", "paint_sky", "ridge_line"]

_LOW = 4  # smooth layers are painted at a quarter of the canvas size


def paint_sky(
    scene: Scene, width: int, height: int, horizon: float, rng: np.random.Generator
) -> tuple[Image.Image, list[Animator]]:
    """The sky down to canvas row `horizon`: gradient, sun or moon with its glow, stars.

    Below the horizon the horizon colour continues; the caller paints over it. Returns
    the canvas and the animators of the sky (twinkling stars at night).
    """
    p = scene.palette
    low_w, low_h = max(2, -(-width // _LOW)), max(2, -(-height // _LOW))
    h = horizon / height
    mid = lerp_colour(p.sky_top, p.sky_horizon, 0.45)
    low = vertical_gradient(low_h, low_w, [(0.0, p.sky_top), (h * 0.6, mid), (h, p.sky_horizon)])

    # Light source: (y as a fraction of the horizon height, radius, glow size, glow strength).
    sun_y, radius, glow, strength = {
        "dawn": (0.8, 0.05, 0.5, 0.75),
        "day": (0.22, 0.04, 0.35, 0.35),
        "sunset": (0.86, 0.06, 0.55, 0.85),
        "dusk": (1.06, 0.0, 0.6, 0.45),
        "night": (0.22, 0.035, 0.14, 0.3),
    }[scene.time_of_day]
    sun = (width * rng.uniform(0.22, 0.78), horizon * sun_y, height * radius)
    glow_colour = p.light if scene.time_of_day != "dusk" else p.sky_horizon
    add_glow(low, (sun[0] / _LOW, sun[1] / _LOW), height * glow / _LOW, glow_colour, strength)
    image = to_image(low, width, height)

    if sun[2] > 0:
        size = int(sun[2] * 2 + 6)
        disc = soft_sprite(size, size, p.light, disc_alpha(size, sun[2], 1.2))
        image.paste(disc, (int(sun[0] - size / 2), int(sun[1] - size / 2)), disc)

    animators: list[Animator] = []
    if scene.is_dark:
        animators.append(_paint_stars(image, horizon * 0.92, rng, scene.layout_seed))
    return image, animators


def _paint_stars(
    image: Image.Image, bottom: float, rng: np.random.Generator, seed: int
) -> Animator:
    """Scatter stars above `bottom`; return an animator that twinkles a few of them."""
    width = image.width
    count = min(600, int(width * bottom / 2500))
    xs, ys = rng.uniform(0, width, count), rng.uniform(0, bottom, count) ** 1.0
    levels = rng.uniform(90, 235, count)
    draw = ImageDraw.Draw(image)
    for x, y, level in zip(xs, ys, levels, strict=True):
        grey = int(level)
        draw.point((float(x), float(y)), fill=(grey, grey, min(255, grey + 20)))
    twinkle = [int(k) for k in rng.choice(count, size=min(24, count), replace=False)]
    phases = rng.uniform(0, 2 * math.pi, len(twinkle))
    speeds = rng.uniform(1.5, 4.0, len(twinkle))

    def twinkle_stars(frame: Image.Image, draw: ImageDraw.ImageDraw, view: View, t: float) -> None:
        for index, phase, speed in zip(twinkle, phases, speeds, strict=True):
            x, y = view.to_frame(float(xs[index]), float(ys[index]))
            level = int(140 + 115 * math.sin(speed * t + phase) ** 2)
            draw.rectangle((x, y, x + 1, y + 1), fill=(level, level, min(255, level + 15)))

    return twinkle_stars


def ridge_line(
    width: int, base: float, amplitude: float, rng: np.random.Generator
) -> NDArray[np.float32]:
    """A smooth hill line: `base` plus a few random sine waves, one y per column."""
    xs = np.arange(width, dtype=np.float32) / max(width, 1)
    tops = np.full(width, base, dtype=np.float32)
    for k in (1.5, 3.1, 7.3, 15.7):
        tops += np.float32(amplitude / k**0.7) * np.sin(
            np.float32(2 * math.pi * k) * xs + np.float32(rng.uniform(0, 2 * math.pi))
        )
    return tops


def build_sky(scene: Scene, width: int, height: int) -> Stage:
    """An open sky: low hills at the bottom, drifting clouds, birds by day, stars by night."""
    rng = np.random.default_rng(scene.layout_seed)
    p = scene.palette
    horizon = height * 0.86
    image, animators = paint_sky(scene, width, height, horizon, rng)
    far = lerp_colour(p.ground, p.sky_horizon, 0.55)
    fill_below(image, ridge_line(width, horizon, height * 0.03, rng), far)
    fill_below(image, ridge_line(width, height * 0.93, height * 0.03, rng), p.ground)
    animators.append(_drifting_clouds(scene, width, height, rng))
    if not scene.is_dark:
        animators.append(_flying_birds(scene, width, height, rng))
    return Stage(image, tuple(animators))


def _drifting_clouds(scene: Scene, width: int, height: int, rng: np.random.Generator) -> Animator:
    p = scene.palette
    colour = {
        "night": lerp_colour(p.sky_top, (110, 115, 140), 0.5),
        "dusk": lerp_colour(p.sky_horizon, (200, 190, 210), 0.4),
        "sunset": lerp_colour(p.light, p.accent, 0.35),
        "dawn": lerp_colour(p.light, (250, 200, 210), 0.4),
    }.get(scene.time_of_day, lerp_colour(p.light, (255, 255, 255), 0.6))
    clouds = []
    for _ in range(int(rng.integers(4, 7))):
        w = int(min(width, height * 1.6) * rng.uniform(0.22, 0.42))
        h = max(8, int(w * rng.uniform(0.22, 0.32)))
        blobs = [
            (rng.uniform(0.2, 0.8), rng.uniform(0.45, 0.6), rng.uniform(0.1, 0.22), 0.3)
            for _ in range(7)
        ]
        alpha = blob_alpha(max(2, h // _LOW), max(2, w // _LOW), blobs) * np.float32(0.85)
        sprite = soft_sprite(w, h, colour, alpha)
        start, y = rng.uniform(0, width), height * rng.uniform(0.05, 0.55)
        clouds.append((sprite, start, y, width * rng.uniform(0.006, 0.02)))

    def drift_clouds(frame: Image.Image, draw: ImageDraw.ImageDraw, view: View, t: float) -> None:
        for sprite, start, y, speed in clouds:
            x = (start + speed * t) % (width + sprite.width) - sprite.width
            fx, fy = view.to_frame(x, y)
            frame.paste(sprite, (round(fx), round(fy)), sprite)

    return drift_clouds


def _flying_birds(scene: Scene, width: int, height: int, rng: np.random.Generator) -> Animator:
    colour = lerp_colour(scene.palette.shadow, scene.palette.sky_top, 0.3)
    span = height * 0.012
    start, y0 = rng.uniform(0, width), height * rng.uniform(0.2, 0.45)
    offsets = [(rng.uniform(-6, 6) * span, rng.uniform(-3, 3) * span) for _ in range(5)]
    speed = width * 0.05

    def fly_birds(frame: Image.Image, draw: ImageDraw.ImageDraw, view: View, t: float) -> None:
        lead = (start + speed * t) % (width * 1.3) - width * 0.15
        for index, (dx, dy) in enumerate(offsets):
            x, y = view.to_frame(lead + dx, y0 + dy + span * math.sin(t + index))
            tip = span * 0.7 * math.sin(t * 14 + index * 1.7)
            line = [(x - span, y - tip), (x, y), (x + span, y - tip)]
            draw.line(line, fill=colour, width=max(1, round(span / 5)))

    return fly_birds


def build_sea(scene: Scene, width: int, height: int) -> Stage:
    """A horizon over the sea: rolling bands of waves and glitter under the sun or moon."""
    rng = np.random.default_rng(scene.layout_seed)
    horizon = round(height * 0.5)
    image, animators = paint_sky(scene, width, height, horizon, rng)
    sun_x = width * float(rng.uniform(0.3, 0.7))
    strip, period = _paint_sea_strip(scene, width, height - horizon, rng)
    image.paste(strip.crop((0, 0, width, height - horizon)), (0, horizon))
    animators.append(_rolling_sea(strip, period, horizon, scene.layout_seed))
    animators.append(_sun_glitter(scene, sun_x, horizon, height))
    return Stage(image, tuple(animators))


def _paint_sea_strip(
    scene: Scene, width: int, rows: int, rng: np.random.Generator
) -> tuple[Image.Image, int]:
    """The sea as a horizontally periodic texture (period P), wide enough to crop any frame.

    Wave streaks are sines with a whole number of cycles per period, so the texture tiles
    seamlessly; they get denser towards the horizon for a sense of depth.
    """
    p = scene.palette
    period = max(256, width // 2)
    depth = (np.arange(rows, dtype=np.float32) / max(rows - 1, 1))[:, None]
    xs = np.arange(period, dtype=np.float32)[None, :] / np.float32(period)
    cycles = np.round(60 - 52 * np.sqrt(depth)).astype(np.float32)
    phase = rng.uniform(0, 2 * math.pi, (rows, 1)).astype(np.float32)
    wave = np.sin(np.float32(2 * math.pi) * cycles * xs + phase)
    crest = np.float32(0.5) + np.float32(0.5) * np.sin(np.float32(9.0) / (depth + np.float32(0.1)))
    high = np.clip(wave * crest * np.float32(1.8) - np.float32(0.9), 0, 1)[..., None]
    low = np.clip(-wave * np.float32(0.12), 0, 0.12)[..., None]

    deep_colour = lerp_colour(p.sky_top, (14, 50, 80), 0.55)
    deep = np.array(deep_colour, dtype=np.float32)
    haze = np.array(lerp_colour(p.sky_horizon, deep_colour, 0.45), dtype=np.float32)
    base = haze + (deep - haze) * np.power(depth, np.float32(0.5))[..., None]
    foam = np.array(lerp_colour(p.light, p.sky_horizon, 0.4), dtype=np.float32)
    sea = base * (1 - low) + (foam - base) * high * np.float32(0.45)
    tiles = -(-(width + period) // period)
    pixels = np.clip(np.tile(sea, (1, tiles, 1)) + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(pixels, "RGB"), period


def _rolling_sea(strip: Image.Image, period: int, horizon: int, seed: int) -> Animator:
    """Slide eight depth bands of the sea texture at their own speeds, with a slight swell."""
    rows = strip.height
    edges = [round(rows * (k / 8) ** 1.6) for k in range(9)]
    rng = np.random.default_rng(seed + 1)
    speeds = [(8 + 70 * (k / 7) ** 1.5) * float(rng.choice([-1.0, 1.0])) for k in range(8)]

    def roll_sea(frame: Image.Image, draw: ImageDraw.ImageDraw, view: View, t: float) -> None:
        top = (horizon - view.y) * view.scale
        for k in range(8):
            y0 = round(top + edges[k] * view.scale)
            y1 = round(top + edges[k + 1] * view.scale)
            y0, y1 = max(y0, 0), min(y1, frame.height)
            if y1 <= y0:
                continue
            swell = round(2 * k / 7 * math.sin(1.3 * t + k)) if k else 0
            r0 = min(max(edges[k] + swell, 0), rows - (y1 - y0))
            x0 = round(view.x * view.scale + speeds[k] * t) % period
            band = strip.crop((x0, r0, x0 + frame.width, r0 + y1 - y0))
            frame.paste(band, (0, y0))

    return roll_sea


def _sun_glitter(scene: Scene, sun_x: float, horizon: int, height: int) -> Animator:
    """Short bright dashes under the light source, redrawn at random on every frame."""
    colour = lerp_colour(scene.palette.light, (255, 255, 255), 0.3)
    count = 70 if scene.time_of_day in ("sunset", "dawn", "day") else 35

    def glitter(frame: Image.Image, draw: ImageDraw.ImageDraw, view: View, t: float) -> None:
        rng = frame_rng(scene.layout_seed, t)
        depth = rng.uniform(0.02, 1.0, count) ** 1.5
        ys = horizon + depth * (height - horizon)
        xs = sun_x + rng.normal(0, 1, count) * (10 + depth * height * 0.12)
        lengths = 2 + depth * height * 0.02
        for x, y, length in zip(xs, ys, lengths, strict=True):
            fx, fy = view.to_frame(float(x), float(y))
            draw.line([(fx - length, fy), (fx + length, fy)], fill=colour, width=1)

    return glitter
