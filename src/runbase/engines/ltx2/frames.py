"""The decoded clip to what the MP4 writer takes: frames at the exact size, stereo audio."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Final

from runbase.engines.base import ProgressSink
from runbase.engines.ltx2.progress import DENOISE_END, check_stop

if TYPE_CHECKING:
    import numpy as np

__all__ = ["audio_rate", "fitted_frames", "stereo"]

_FRAME_CHUNK: Final = 8
"""Frames resized on the device per batch: 8 frames of 1080p are about 200 MB as float."""


def audio_rate(pipeline: Any) -> int:
    return int(pipeline.vocoder.config.output_sampling_rate)


def stereo(audio: Any) -> np.ndarray:
    """The first clip's audio as float32 (2, n): mono is doubled, extra channels dropped."""
    import numpy as np

    samples = audio[0].float().cpu().numpy()
    if samples.shape[0] == 1:
        samples = np.concatenate([samples, samples])
    return np.ascontiguousarray(samples[:2], dtype=np.float32)


def fitted_frames(
    torch: Any, video: Any, width: int, height: int, count: int, progress: ProgressSink
) -> Iterator[np.ndarray]:
    """The first `count` frames of `video` (F, C, h, w) in [0, 1], centre-cropped to the
    ratio width:height and resized to width x height, as HxWx3 uint8 arrays.

    Resizing runs on the video's device, a few frames at a time, so that a 1080p clip is
    never held as float on the CPU; a stop request is honoured between batches.
    """
    _, _, source_h, source_w = video.shape
    if source_w * height > width * source_h:
        kept = round(source_h * width / height)
        left = (source_w - kept) // 2
        video = video[:, :, :, left : left + kept]
    else:
        kept = round(source_w * height / width)
        top = (source_h - kept) // 2
        video = video[:, :, top : top + kept, :]
    reported = DENOISE_END
    for start in range(0, count, _FRAME_CHUNK):
        check_stop(progress)
        chunk = video[start : min(start + _FRAME_CHUNK, count)].float()
        if chunk.shape[-2:] != (height, width):
            chunk = torch.nn.functional.interpolate(
                chunk, size=(height, width), mode="bicubic", antialias=True, align_corners=False
            )
        pixels = (chunk.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1)
        yield from pixels.cpu().numpy()
        fraction = DENOISE_END + (0.99 - DENOISE_END) * (start + len(chunk)) / count
        if fraction - reported >= 0.05:
            progress.progress(round(fraction, 4), "encoding the video")
            reported = fraction
