"""Inhabited stages: a city skyline over a street, and a forest of pines.

Both stand under the shared procedural sky of `outdoor.paint_sky`; see `outdoor` for how
stages are painted once and animated cheaply.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw

from .layers import Animator, Stage, View, fill_below, lerp_colour
from .outdoor import paint_sky, ridge_line
from .scene import Scene

__all__ = ["build_city", "build_forest"]


def build_city(scene: Scene, width: int, height: int) -> Stage:
    """A skyline over a street: hazy far towers, near towers with windows, passing cars."""
    rng = np.random.default_rng(scene.layout_seed)
    p = scene.palette
    street = round(height * 0.82)
    image, animators = paint_sky(scene, width, height, street, rng)
    unit = min(width, height) / 100
    far_tops = _building_tops(width, street, unit * 4, height * 0.2, height * 0.5, rng)
    fill_below(image, far_tops, lerp_colour(p.shadow, p.sky_horizon, 0.45))
    near = lerp_colour(p.shadow, p.ground, 0.25)
    near_tops = _building_tops(width, street, unit * 7, height * 0.1, height * 0.45, rng)
    fill_below(image, near_tops, near)
    windows = _paint_windows(image, near_tops, street, unit, scene, rng)

    draw = ImageDraw.Draw(image)
    draw.rectangle((0, street, width, height), fill=lerp_colour(p.shadow, (40, 40, 46), 0.4))
    dash = max(2, round(unit * 3))
    for x in range(0, width, dash * 3):
        y = street + (height - street) * 0.5
        draw.line([(x, y), (x + dash, y)], fill=lerp_colour(p.ground, (200, 200, 190), 0.5))
    animators.append(_flicker_windows(windows, scene, rng))
    animators.append(_passing_cars(scene, width, height, street, rng))
    return Stage(image, tuple(animators))


def _building_tops(
    width: int,
    base: float,
    mean_width: float,
    low: float,
    high: float,
    rng: np.random.Generator,
) -> NDArray[np.float32]:
    """Roof lines of a row of buildings: flat, stepped or with an antenna."""
    tops = np.full(width, base, dtype=np.float32)
    x = -int(rng.uniform(0, mean_width))
    while x < width:
        w = max(3, int(mean_width * rng.uniform(0.6, 1.6)))
        top = base - rng.uniform(low, high)
        a, b = max(x, 0), min(x + w, width)
        tops[a:b] = np.minimum(tops[a:b], top)
        style = rng.random()
        if style < 0.25 and w > 6:  # a stepped crown
            inset = w // 4
            tops[max(a, x + inset) : max(a, min(b, x + w - inset))] = top - mean_width * 0.4
        elif style < 0.4:  # an antenna
            mid = x + w // 2
            if 0 <= mid < width:
                tops[mid : mid + 2] = top - mean_width * 1.2
        x += w + int(rng.uniform(0, mean_width * 0.3))
    return tops


def _paint_windows(
    image: Image.Image,
    tops: NDArray[np.float32],
    street: int,
    unit: float,
    scene: Scene,
    rng: np.random.Generator,
) -> list[tuple[float, float, float, float]]:
    """A grid of windows under the roof line; some lit. Returns a few to flicker later."""
    p = scene.palette
    lit_share = {"night": 0.45, "dusk": 0.35, "sunset": 0.15}.get(scene.time_of_day, 0.0)
    dark = lerp_colour(p.shadow, p.sky_horizon, 0.3 if scene.is_dark else 0.5)
    lights = [(255, 214, 150), (255, 236, 190), (200, 225, 255)]
    if "neon" in scene.colours:
        lights = [p.accent, (40, 240, 255), (255, 236, 190)]
    draw = ImageDraw.Draw(image)
    step_x, step_y = max(3.0, unit * 2.2), max(4.0, unit * 2.8)
    win_w, win_h = max(1.0, unit * 1.1), max(2.0, unit * 1.5)
    flicker = []
    for x in np.arange(step_x * 0.5, image.width - win_w, step_x):
        roof = float(tops[int(x) : int(x + win_w) + 1].max())
        for y in np.arange(roof + step_y * 0.8, street - step_y, step_y):
            lit = rng.random() < lit_share
            colour = lights[int(rng.integers(len(lights)))] if lit else dark
            box = (float(x), float(y), float(x + win_w), float(y + win_h))
            draw.rectangle(box, fill=colour)
            if lit_share and rng.random() < 0.01:
                flicker.append(box)
    return flicker[:24]


def _flicker_windows(
    windows: list[tuple[float, float, float, float]], scene: Scene, rng: np.random.Generator
) -> Animator:
    on = (255, 220, 160) if "neon" not in scene.colours else scene.palette.accent
    off = lerp_colour(scene.palette.shadow, scene.palette.sky_horizon, 0.3)
    rates = rng.uniform(0.2, 0.7, len(windows))
    phases = rng.uniform(0, 10, len(windows))

    def flicker(frame: Image.Image, draw: ImageDraw.ImageDraw, view: View, t: float) -> None:
        for (x0, y0, x1, y1), rate, phase in zip(windows, rates, phases, strict=True):
            a, b = view.to_frame(x0, y0)
            c, d = view.to_frame(x1, y1)
            draw.rectangle((a, b, c, d), fill=on if math.sin(rate * t + phase) > 0 else off)

    return flicker


def _passing_cars(
    scene: Scene, width: int, height: int, street: int, rng: np.random.Generator
) -> Animator:
    """Two lanes of cars: head lights one way, tail lights the other."""
    unit = min(width, height) / 100
    lanes = [
        (street + (height - street) * 0.3, -1.0, (255, 60, 50)),
        (street + (height - street) * 0.72, 1.0, (255, 244, 214)),
    ]
    cars = [
        (lane, float(rng.uniform(0, width)), width * float(rng.uniform(0.08, 0.16)))
        for lane in lanes
        for _ in range(int(rng.integers(3, 7)))
    ]
    body = lerp_colour(scene.palette.shadow, (30, 30, 36), 0.5)
    radius = max(1.0, unit * 0.5)

    def drive_cars(frame: Image.Image, draw: ImageDraw.ImageDraw, view: View, t: float) -> None:
        for (y, direction, light), start, speed in cars:
            x = (start + direction * speed * t) % (width + 8 * radius) - 4 * radius
            fx, fy = view.to_frame(x, y)
            r = radius * view.scale
            draw.rectangle((fx - 4 * r, fy - 2 * r, fx + 4 * r, fy + r), fill=body)
            for dx in (-2.6 * r, 2.6 * r):
                draw.ellipse((fx + dx - r, fy - r, fx + dx + r, fy + r), fill=light)

    return drive_cars


def build_forest(scene: Scene, width: int, height: int) -> Stage:
    """Layers of pines fading into haze, drifting mist, and motes (fireflies at night)."""
    rng = np.random.default_rng(scene.layout_seed)
    p = scene.palette
    image, animators = paint_sky(scene, width, height, height * 0.62, rng)
    hills = lerp_colour(p.ground, p.sky_horizon, 0.6)
    fill_below(image, ridge_line(width, height * 0.58, height * 0.04, rng), hills)
    layers = ((0.74, 0.14, 0.28, 0.45), (0.87, 0.22, 0.42, 0.22), (1.04, 0.4, 0.75, 0.0))
    for base, short, tall, haze in layers:
        colour = lerp_colour(lerp_colour(p.shadow, p.ground, 0.45), p.sky_horizon, haze)
        fill_below(
            image, _pine_tops(width, height * base, height * short, height * tall, rng), colour
        )
    animators.append(_floating_motes(scene, width, height, rng))
    return Stage(image, tuple(animators))


def _pine_tops(
    width: int, base: float, short: float, tall: float, rng: np.random.Generator
) -> NDArray[np.float32]:
    """Silhouette line of a row of pines: tiered triangles of random height."""
    tops = np.full(width, base, dtype=np.float32)
    x = -tall * 0.2
    while x < width + tall * 0.2:
        tree_h = rng.uniform(short, tall)
        half = tree_h * rng.uniform(0.16, 0.24)
        a, b = max(int(x - half), 0), min(int(x + half) + 1, width)
        if b > a:
            dx = np.abs(np.arange(a, b, dtype=np.float32) - np.float32(x))
            tiers = np.float32(tree_h / 6)
            jag = np.mod(dx * np.float32(2.2), tiers) * np.float32(0.5)
            outline = np.float32(base - tree_h) + dx * np.float32(tree_h / half) + jag
            tops[a:b] = np.minimum(tops[a:b], outline)
        x += half * rng.uniform(0.7, 1.4)
    return tops


def _floating_motes(scene: Scene, width: int, height: int, rng: np.random.Generator) -> Animator:
    """Slowly drifting specks of light: fireflies by night, pollen in the sun by day."""
    count = 60
    xs, ys = rng.uniform(0, width, count), rng.uniform(height * 0.35, height, count)
    drift = rng.uniform(-0.015, 0.015, (count, 2)) * height
    phases = rng.uniform(0, 2 * math.pi, count)
    radius = max(1.0, min(width, height) * 0.0025)
    glow = (
        (210, 255, 120) if scene.is_dark else lerp_colour(scene.palette.light, (255, 255, 255), 0.5)
    )

    def float_motes(frame: Image.Image, draw: ImageDraw.ImageDraw, view: View, t: float) -> None:
        for k in range(count):
            blink = math.sin(1.7 * t + phases[k])
            if scene.is_dark and blink < 0:
                continue
            x = (xs[k] + drift[k, 0] * t + height * 0.01 * math.sin(t + phases[k])) % width
            y = (ys[k] + drift[k, 1] * t) % height
            fx, fy = view.to_frame(float(x), float(y))
            r = radius * (0.6 + 0.5 * abs(blink))
            draw.ellipse((fx - r, fy - r, fx + r, fy + r), fill=glow)

    return float_motes
