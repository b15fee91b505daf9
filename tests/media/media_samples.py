"""Test pictures and sound for the media tests (imported by name, like tests/support.py)."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import Any

import numpy as np
from PIL import Image

FPS = 24


def smooth_frame(width: int, height: int, index: int) -> np.ndarray:
    """A smooth colour gradient with a soft moving blob: easy to compress, easy to compare."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    cx = width * (0.2 + 0.6 * ((index * 7) % 60) / 60)
    blob = np.exp(-(((x - cx) ** 2 + (y - height / 2) ** 2) / (2 * (height / 8) ** 2)))
    frame = np.empty((height, width, 3), dtype=np.float32)
    frame[..., 0] = 40 + 160 * x / width
    frame[..., 1] = 40 + 160 * y / height
    frame[..., 2] = 60 + 150 * blob
    return frame.round().astype(np.uint8)


def smooth_frames(width: int, height: int, count: int) -> Iterator[np.ndarray]:
    for index in range(count):
        yield smooth_frame(width, height, index)


def stereo_tone(seconds: float, rate: int = 48_000) -> np.ndarray:
    """A 440 Hz tone on the left and 660 Hz on the right, float32 (2, n)."""
    t = np.arange(round(seconds * rate), dtype=np.float64) / rate
    left = 0.4 * np.sin(2 * np.pi * 440 * t)
    right = 0.4 * np.sin(2 * np.pi * 660 * t)
    return np.stack([left, right]).astype(np.float32)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def encode_image(
    fmt: str, size: tuple[int, int], *, mode: str = "RGB", **save_options: Any
) -> bytes:
    """A gradient picture of `size`, saved in Pillow format `fmt`."""
    width, height = size
    x = np.linspace(0, 255, width, dtype=np.float32)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    pixels = np.empty((height, width, 3), dtype=np.uint8)
    pixels[..., 0] = x.astype(np.uint8)
    pixels[..., 1] = y.astype(np.uint8)
    pixels[..., 2] = 128
    image = Image.fromarray(pixels).convert(mode)
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **save_options)
    return buffer.getvalue()
