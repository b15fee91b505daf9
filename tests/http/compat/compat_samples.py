"""What the tests of both compatible surfaces share: test images, their comparison, a run's
ledger entries, and a rate limit that polling never reaches."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from support import LiveServer

FAST = "1000/second"


def png(width: int, height: int, colour: tuple[int, int, int] = (200, 40, 40)) -> bytes:
    """A gradient with a coloured block, so that a wrong image, a crop or a shift shows."""
    x = np.linspace(0, 255, width, dtype=np.float32)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    pixels = np.zeros((height, width, 3), dtype=np.uint8)
    pixels[..., 0] = np.broadcast_to(x, (height, width)).astype(np.uint8)
    pixels[..., 1] = np.broadcast_to(y, (height, width)).astype(np.uint8)
    pixels[height // 3 : height // 2, width // 4 : width // 2] = colour
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    error = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if error == 0 else float(10 * np.log10(255**2 / error))


def charges(server: LiveServer, account: str, run_id: str) -> list[str]:
    """The kinds of the run's ledger entries, sorted: ["charge"], ["charge", "refund"]."""
    return sorted(entry.kind for entry in server.admin.ledger(account) if entry.run_id == run_id)
