"""Studio stages: an interior with a lit product on a table, and abstract moving shapes.

The interior is the product-shot set (studio, room, kitchen, office, product): a wall lit by
a lamp, a window showing the time of day, a table, and an accent-coloured bottle whose
highlight sweeps across it. The abstract stage is the fallback when the prompt names no
place: soft shapes gliding over a colour wash.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image, ImageChops, ImageDraw

from .layers import (
    Animator,
    Stage,
    View,
    add_glow,
    blob_alpha,
    disc_alpha,
    lerp_colour,
    soft_sprite,
    to_image,
    vertical_gradient,
)
from .scene import Scene

__all__ = ["build_abstract", "build_interior"]

_LOW = 4


def build_interior(scene: Scene, width: int, height: int) -> Stage:
    """Wall, window, table and product, painted in that order, back to front."""
    rng = np.random.default_rng(scene.layout_seed)
    p = scene.palette
    floor_y = height * 0.66
    warmth = 0.25 if scene.is_dark else 0.5
    wall_top = lerp_colour(lerp_colour(p.shadow, p.light, warmth * 0.6), p.accent, 0.08)
    wall_low = lerp_colour(lerp_colour(p.shadow, p.light, warmth), p.accent, 0.12)
    floor = lerp_colour(lerp_colour(p.shadow, (150, 110, 80), 0.5), p.accent, 0.08)
    stops = [
        (0.0, wall_top),
        (floor_y / height, wall_low),
        (floor_y / height + 0.001, floor),
        (1.0, lerp_colour(floor, p.shadow, 0.5)),
    ]
    low = vertical_gradient(max(2, height // _LOW), max(2, width // _LOW), stops)
    lamp = (width * rng.uniform(0.6, 0.85), height * rng.uniform(0.15, 0.3))
    add_glow(low, (lamp[0] / _LOW, lamp[1] / _LOW), height * 0.3 / _LOW, p.light, 0.45)
    image = to_image(low, width, height)
    draw = ImageDraw.Draw(image)

    _paint_window(draw, scene, width, height)
    wood = lerp_colour((128, 88, 60), p.accent, 0.12)
    top_y, front_y = height * 0.72, height * 0.8
    draw.polygon(
        [
            (width * 0.24, top_y),
            (width * 0.76, top_y),
            (width * 0.86, front_y),
            (width * 0.14, front_y),
        ],
        fill=lerp_colour(wood, p.light, 0.15),
    )
    draw.rectangle((width * 0.14, front_y, width * 0.86, height * 0.84), fill=wood)
    for leg in (0.17, 0.81):
        draw.rectangle(
            (width * leg, height * 0.84, width * (leg + 0.02), height),
            fill=lerp_colour(wood, p.shadow, 0.4),
        )

    product, mask, origin = _paint_product(scene, width, height, (width * 0.5, height * 0.77))
    shadow_w, shadow_h = product.width * 2, max(4, product.height // 6)
    shadow = soft_sprite(
        shadow_w, shadow_h, p.shadow, blob_alpha(8, 16, [(0.5, 0.5, 0.35, 0.35)]) * np.float32(0.6)
    )
    image.paste(
        shadow,
        (int(origin[0] - shadow_w / 4), int(origin[1] + product.height - shadow_h / 2)),
        shadow,
    )
    image.paste(product, (int(origin[0]), int(origin[1])), mask)
    animators = (_sweep_highlight(mask, origin), _dancing_dust(scene, width, height, rng))
    return Stage(image, animators)


def _paint_window(draw: ImageDraw.ImageDraw, scene: Scene, width: int, height: int) -> None:
    """A window on the wall showing the sky of the time of day, with a frame and a cross."""
    p = scene.palette
    x0, y0, x1, y1 = width * 0.07, height * 0.1, width * 0.07 + height * 0.3, height * 0.5
    steps = 24
    for k in range(steps):
        colour = lerp_colour(p.sky_top, p.sky_horizon, k / (steps - 1))
        ya, yb = y0 + (y1 - y0) * k / steps, y0 + (y1 - y0) * (k + 1) / steps
        draw.rectangle((x0, ya, x1, yb), fill=colour)
    frame = lerp_colour(p.shadow, (230, 224, 214), 0.6)
    bar = max(2.0, height * 0.012)
    draw.rectangle((x0, y0, x1, y1), outline=frame, width=int(bar))
    draw.rectangle(((x0 + x1 - bar) / 2, y0, (x0 + x1 + bar) / 2, y1), fill=frame)
    draw.rectangle((x0, (y0 + y1 - bar) / 2, x1, (y0 + y1 + bar) / 2), fill=frame)


def _paint_product(
    scene: Scene, width: int, height: int, base: tuple[float, float]
) -> tuple[Image.Image, Image.Image, tuple[float, float]]:
    """An accent-coloured bottle, shaded as a cylinder: (colour, mask, top-left on canvas)."""
    bottle_h = max(8, round(height * 0.3))
    bottle_w = max(4, round(bottle_h * 0.36))
    big = 2  # draw the mask at twice the size and shrink it: cheap antialiasing
    mask = Image.new("L", (bottle_w * big, bottle_h * big), 0)
    draw = ImageDraw.Draw(mask)
    w, h = bottle_w * big, bottle_h * big
    draw.rounded_rectangle((0, h * 0.3, w - 1, h - 1), radius=w * 0.22, fill=255)
    draw.rectangle((w * 0.34, h * 0.1, w * 0.66, h * 0.36), fill=255)
    draw.rounded_rectangle((w * 0.3, 0, w * 0.7, h * 0.13), radius=w * 0.05, fill=255)
    mask = mask.resize((bottle_w, bottle_h), Image.Resampling.BILINEAR)

    xs = np.linspace(-1.0, 1.0, bottle_w, dtype=np.float32)
    shade = np.float32(0.45) + np.float32(0.55) * np.sqrt(np.clip(1 - xs * xs, 0, 1))
    colour = np.array(scene.palette.accent, dtype=np.float32)
    row = np.clip(colour[None, :] * shade[:, None] + 0.5, 0, 255).astype(np.uint8)
    product = Image.fromarray(np.repeat(row[None, :, :], bottle_h, axis=0), "RGB")
    cap = lerp_colour(scene.palette.shadow, (200, 200, 205), 0.7)
    ImageDraw.Draw(product).rectangle((0, 0, bottle_w, bottle_h * 0.13), fill=cap)
    return product, mask, (base[0] - bottle_w / 2, base[1] - bottle_h)


def _sweep_highlight(mask: Image.Image, origin: tuple[float, float]) -> Animator:
    """A soft white band that sweeps across the bottle every three seconds."""
    w, h = mask.size
    band_w = max(2, w // 3)
    xs = np.arange(3 * w, dtype=np.float32)
    centre = np.float32(1.5 * w)
    band = np.exp(-(((xs - centre) / np.float32(band_w / 2)) ** 2)) * np.float32(150)
    band_image = Image.fromarray(np.repeat(band.astype(np.uint8)[None, :], h, axis=0), "L")

    def sweep(frame: Image.Image, draw: ImageDraw.ImageDraw, view: View, t: float) -> None:
        phase = (t / 3.0) % 1.0
        offset = round(w * 2 * (1 - phase))
        light = ImageChops.multiply(band_image.crop((offset, 0, offset + w, h)), mask)
        size = (max(1, round(w * view.scale)), max(1, round(h * view.scale)))
        if size != light.size:
            light = light.resize(size, Image.Resampling.BILINEAR)
        fx, fy = view.to_frame(*origin)
        frame.paste((255, 255, 255), (round(fx), round(fy)), light)

    return sweep


def _dancing_dust(scene: Scene, width: int, height: int, rng: np.random.Generator) -> Animator:
    """Dust motes turning in the lamp light."""
    count = 40
    xs, ys = rng.uniform(0, width, count), rng.uniform(0, height * 0.7, count)
    phases = rng.uniform(0, 2 * math.pi, count)
    radius = max(1.0, min(width, height) * 0.002)
    colour = lerp_colour(scene.palette.light, (255, 255, 255), 0.4)

    def dust(frame: Image.Image, draw: ImageDraw.ImageDraw, view: View, t: float) -> None:
        for k in range(count):
            x = xs[k] + height * 0.03 * math.sin(0.4 * t + phases[k])
            y = ys[k] + height * 0.02 * math.cos(0.3 * t + 2 * phases[k])
            fx, fy = view.to_frame(float(x), float(y))
            draw.ellipse((fx - radius, fy - radius, fx + radius, fy + radius), fill=colour)

    return dust


def build_abstract(scene: Scene, width: int, height: int) -> Stage:
    """A smooth colour wash with soft discs, rings and squares gliding on Lissajous paths."""
    rng = np.random.default_rng(scene.layout_seed)
    p = scene.palette
    low_w, low_h = max(2, width // _LOW), max(2, height // _LOW)
    ys = np.linspace(0, 1, low_h, dtype=np.float32)[:, None, None]
    xs = np.linspace(0, 1, low_w, dtype=np.float32)[None, :, None]
    a, b, c = (
        np.array(colour, dtype=np.float32) for colour in (p.sky_top, p.sky_horizon, p.accent)
    )
    fx, fy, phase = rng.uniform(0.6, 1.6), rng.uniform(0.6, 1.6), rng.uniform(0, 6.3)
    mix = np.float32(0.5) + np.float32(0.5) * np.sin(
        np.float32(math.pi * fx) * xs + np.float32(math.pi * fy) * ys + np.float32(phase)
    )
    wash = a + (b - a) * ys
    wash = wash + (c - wash) * mix * np.float32(0.35)
    image = to_image(wash.astype(np.float32), width, height)

    unit = min(width, height)
    shapes = []
    colours = [p.accent, p.light, lerp_colour(p.accent, p.sky_horizon, 0.5), p.sky_horizon]
    for k in range(6):
        size = max(8, int(unit * rng.uniform(0.12, 0.28)))
        kind = ("disc", "ring", "square")[k % 3]
        sprite = _shape_sprite(
            kind, size, colours[k % len(colours)], float(rng.uniform(0.55, 0.85))
        )
        path = (
            rng.uniform(0.15, 0.85) * width,
            rng.uniform(0.15, 0.85) * height,
            rng.uniform(0.08, 0.25) * width,
            rng.uniform(0.08, 0.25) * height,
            rng.uniform(0.3, 0.9),
            rng.uniform(0.3, 0.9),
            rng.uniform(0, 6.3),
        )
        shapes.append((kind, sprite, path, float(rng.uniform(-30, 30))))

    def glide(frame: Image.Image, draw: ImageDraw.ImageDraw, view: View, t: float) -> None:
        for kind, sprite, (cx, cy, ax, ay, wx, wy, ph), spin in shapes:
            x = cx + ax * math.sin(wx * t + ph)
            y = cy + ay * math.sin(wy * t + 2 * ph)
            shape = (
                sprite.rotate(spin * t, Image.Resampling.BILINEAR) if kind == "square" else sprite
            )
            px, py = view.to_frame(x, y)
            frame.paste(shape, (round(px - shape.width / 2), round(py - shape.height / 2)), shape)

    return Stage(image, (glide,))


def _shape_sprite(
    kind: str, size: int, colour: tuple[int, int, int], opacity: float
) -> Image.Image:
    """A soft-edged disc, ring or square sprite of one colour."""
    if kind == "disc":
        alpha = disc_alpha(size, size * 0.45, size * 0.03)
    elif kind == "ring":
        alpha = disc_alpha(size, size * 0.45, size * 0.02) - disc_alpha(
            size, size * 0.33, size * 0.02
        )
    else:
        alpha = np.zeros((size, size), dtype=np.float32)
        inset = size // 6
        alpha[inset : size - inset, inset : size - inset] = 1.0
    return soft_sprite(size, size, colour, np.clip(alpha, 0, 1) * np.float32(opacity))
