"""Frames rendered in a thread, ahead of the encoder that consumes them.

Rendering and encoding overlap because libx264, libswscale and most Pillow calls release
the GIL: on two cores the encoder sets the pace and rendering hides behind it.

The producer starts before the overlays exist (they need the soundtrack's spoken lines,
which take ~0.1 s to compose): it paints the first pictures meanwhile, up to a memory
budget, and finishes them once the overlays arrive.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from typing import Final

from PIL import Image

from runbase.errors import GenerationFailed

from .frames import Film, Frame, Overlays

__all__ = ["FrameProducer"]

_QUEUE_DEPTH: Final = 6
"""Finished frames waiting for the encoder: enough to ride out jitter."""
_EARLY_BYTES: Final = 48 * 2**20
"""Memory for pictures painted while the overlays are not ready yet: about 13 at 720p.

Once the overlays come, the encoder sets the pace and the producer stays ahead of it with
a few frames queued, so pictures painted beyond the first few save nothing; a larger
budget only raised the engine's peak (160 MB was about 120 MB more on a first run)."""


class FrameProducer:
    """Renders `film` in a thread; `frames()` yields the finished frames in order.

    `overlays` is resolved by the caller (`set_result`, or `set_exception` to give up).
    `close()` stops the thread within one frame; always call it (a `finally` block).
    """

    def __init__(self, film: Film, overlays: Future[Overlays]) -> None:
        self._film = film
        self._overlays = overlays
        self._items: queue.Queue[Frame | BaseException] = queue.Queue(maxsize=_QUEUE_DEPTH)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._produce, name="preview-render", daemon=True)
        self._thread.start()

    def frames(self) -> Iterator[Frame]:
        """Yield every frame; an error in the producer is raised here as `GenerationFailed`."""
        for _ in range(self._film.num_frames):
            item = self._items.get()
            if isinstance(item, BaseException):
                raise GenerationFailed(f"rendering a preview frame failed: {item}") from item
            yield item

    def close(self) -> None:
        self._stop.set()
        if not self._overlays.done():
            self._overlays.cancel()
        self._thread.join(timeout=5)

    def _offer(self, item: Frame | BaseException) -> None:
        while not self._stop.is_set():
            try:
                self._items.put(item, timeout=0.05)
                return
            except queue.Full:
                continue

    def _produce(self) -> None:
        """1. Paint early pictures until the overlays are ready (or the budget is spent).
        2. Finish every frame in order: early pictures first, then paint as we go."""
        film = self._film
        try:
            early: list[Image.Image | None] = []
            limit = max(1, _EARLY_BYTES // max(1, self._picture_bytes()))
            while not self._overlays.done() and len(early) < min(limit, film.num_frames):
                if self._stop.is_set():
                    return
                early.append(film.picture(len(early)))
            overlays = self._overlays.result()
            for index in range(film.num_frames):
                if self._stop.is_set():
                    return
                picture = early[index] if index < len(early) else None
                if picture is not None:
                    early[index] = None  # let the memory go
                else:
                    picture = film.picture(index)
                self._offer(overlays.finish(picture, index))
        except BaseException as exc:
            self._offer(exc)

    def _picture_bytes(self) -> int:
        width, height = self._film.size
        return width * height * 4  # Pillow keeps RGB as 4 bytes a pixel
