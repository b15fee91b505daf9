"""Read an MP4 back: what it holds, some of its frames, its audio.

Tests use `probe` to prove that files meet the output rules, so it measures rather than
trusts: the frame count comes from demuxing every video packet, durations from packet
timestamps, and `is_faststart` from the file's own top-level boxes, not from what a header
claims. Before a run may succeed, the worker checks its video with `shape`: size, audio,
and the frame count from the container's index (the sample table that demuxing walks),
cheap enough for a gateway that checks a thousand videos at once.

The only files read are ones an engine or a provider made, so a file PyAV cannot read
raises `GenerationFailed`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from av.audio.stream import AudioStream
from av.container import InputContainer
from av.video.stream import VideoStream

from runbase.errors import GenerationFailed

__all__ = [
    "AudioStreamInfo",
    "MediaInfo",
    "Shape",
    "VideoStreamInfo",
    "is_faststart",
    "probe",
    "read_audio",
    "read_frames",
    "shape",
]


@dataclass(frozen=True)
class VideoStreamInfo:
    """The first video stream, as measured."""

    codec: str
    profile: str | None
    pix_fmt: str
    width: int
    height: int
    num_frames: int
    fps: float
    duration: float


@dataclass(frozen=True)
class AudioStreamInfo:
    """One audio stream, as measured."""

    codec: str
    profile: str | None
    sample_rate: int
    channels: int
    duration: float


@dataclass(frozen=True)
class MediaInfo:
    """What a media file holds."""

    format_name: str
    duration: float
    video: VideoStreamInfo | None
    audio: tuple[AudioStreamInfo, ...]
    is_faststart: bool


def probe(path: Path) -> MediaInfo:
    """Describe the file at `path`, counting its video frames by demuxing."""
    with _open(path) as container:
        video_stream = container.streams.video[0] if container.streams.video else None
        audio_streams = tuple(container.streams.audio)
        spans = _measure_packets(container)
        video = None
        if video_stream is not None:
            video = _describe_video(video_stream, *spans.get(video_stream.index, (0, 0.0)))
        audio = tuple(_describe_audio(s, spans.get(s.index, (0, 0.0))[1]) for s in audio_streams)
        duration = container.duration / av.time_base if container.duration else 0.0
        format_name = container.format.name
    return MediaInfo(
        format_name=format_name,
        duration=duration,
        video=video,
        audio=audio,
        is_faststart=is_faststart(path),
    )


@dataclass(frozen=True)
class Shape:
    """What the output rules check (the first video stream's size and frame count, and
    whether there is audio), read from the container's index without demuxing."""

    width: int
    height: int
    num_frames: int
    has_video: bool
    has_audio: bool


def shape(path: Path) -> Shape:
    """The file's `Shape`. An MP4's frame count is its video track's sample count, the
    index that demuxing walks; a file whose index has none (a fragmented MP4) is demuxed.

    A gateway checks a thousand videos at once when a thousand tasks end together, on a
    thread beside its event loop: `probe`'s demuxing gives the GIL up and waits for it back
    at every packet, which beside a busy thread costs milliseconds each; this does not.
    """
    with _open(path) as container:
        if not container.streams.video:
            return Shape(0, 0, 0, has_video=False, has_audio=bool(container.streams.audio))
        stream = container.streams.video[0]
        frames = stream.frames or sum(1 for packet in container.demux(stream) if packet.size)
        codec = stream.codec_context
        return Shape(
            codec.width,
            codec.height,
            frames,
            has_video=True,
            has_audio=bool(container.streams.audio),
        )


def read_frames(path: Path, indices: Sequence[int]) -> list[np.ndarray]:
    """Decode the frames at `indices` (negative ones count from the end) as HxWx3 RGB.

    Frames come back in the order of `indices`; an index may repeat.
    """
    with _open(path) as container:
        if not container.streams.video:
            raise ValueError(f"{path.name} has no video stream")
        stream = container.streams.video[0]
        total = sum(1 for packet in container.demux(stream) if packet.size)
        wanted = []
        for index in indices:
            position = index + total if index < 0 else index
            if not 0 <= position < total:
                raise IndexError(f"frame {index} is out of range for {total} frames")
            wanted.append(position)
        if not wanted:
            return []
        container.seek(0)
        found: dict[int, np.ndarray] = {}
        targets = set(wanted)
        last = max(targets)
        for position, frame in enumerate(container.decode(stream)):
            if position in targets:
                found[position] = frame.to_ndarray(format="rgb24")
            if position >= last:
                break
    missing = targets - found.keys()
    if missing:
        raise GenerationFailed(f"{path.name}: frames {sorted(missing)} could not be decoded")
    return [found[position] for position in wanted]


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    """Decode the first audio stream: float32 (channels, n) samples and the sample rate.

    Decoders drop AAC's leading priming samples but return the last frame whole; the
    result is trimmed to the duration the packets declare, so it matches `probe`.
    """
    with _open(path) as container:
        if not container.streams.audio:
            raise ValueError(f"{path.name} has no audio stream")
        stream = container.streams.audio[0]
        rate = stream.codec_context.sample_rate
        chunks = []
        for frame in container.decode(stream):
            samples = frame.to_ndarray()
            if not frame.format.is_planar:
                samples = samples.reshape(-1, frame.layout.nb_channels).T
            chunks.append(samples.astype(np.float32, copy=False))
        container.seek(0)
        declared = _measure_packets(container).get(stream.index, (0, 0.0))[1]
    channels = stream.codec_context.channels
    audio = np.concatenate(chunks, axis=1) if chunks else np.zeros((channels, 0), np.float32)
    return audio[:, : round(declared * rate)], rate


def is_faststart(path: Path) -> bool:
    """True when the `moov` box (the index) comes before `mdat` (the media data).

    Only then can a player start before the whole file has arrived. Walks the top-level
    ISO BMFF boxes: a 32-bit big-endian size and a 4-byte type, where size 1 means a
    64-bit size follows and size 0 means "to the end of the file".
    """
    with Path(path).open("rb") as file:
        while True:
            header = file.read(8)
            if len(header) < 8:
                return False
            size, kind = struct.unpack(">I4s", header)
            if kind == b"moov":
                return True
            if kind == b"mdat" or size == 0:
                return False
            header_size = 8
            if size == 1:
                extended = file.read(8)
                if len(extended) < 8:
                    return False
                (size,) = struct.unpack(">Q", extended)
                header_size = 16
            if size < header_size:
                return False  # a corrupt box; never loop on it
            file.seek(size - header_size, 1)


@contextmanager
def _open(path: Path) -> Iterator[InputContainer]:
    try:
        container = av.open(str(path), mode="r")
    except (av.FFmpegError, OSError) as exc:
        raise GenerationFailed(f"{Path(path).name} is not a readable media file: {exc}") from exc
    try:
        yield container
    except av.FFmpegError as exc:
        raise GenerationFailed(f"{Path(path).name} could not be read: {exc}") from exc
    finally:
        container.close()


def _measure_packets(container: InputContainer) -> dict[int, tuple[int, float]]:
    """Per stream index: the number of packets and the span they cover, in seconds.

    Packets before time 0 (AAC priming, cut by the edit list) count for the span's end
    only: the presentation starts at 0.
    """
    counts: dict[int, int] = {}
    starts: dict[int, int] = {}
    ends: dict[int, int] = {}
    bases: dict[int, Fraction] = {}
    for packet in container.demux():
        if not packet.size or packet.pts is None or packet.time_base is None:
            continue
        index = packet.stream.index
        counts[index] = counts.get(index, 0) + 1
        bases[index] = packet.time_base
        start = max(packet.pts, 0)
        starts[index] = min(starts.get(index, start), start)
        ends[index] = max(ends.get(index, start), packet.pts + (packet.duration or 0))
    return {
        index: (counts[index], float((ends[index] - starts[index]) * bases[index]))
        for index in counts
    }


def _describe_video(stream: VideoStream, num_frames: int, duration: float) -> VideoStreamInfo:
    codec = stream.codec_context
    rate = stream.average_rate or stream.guessed_rate
    return VideoStreamInfo(
        codec=codec.name,
        profile=codec.profile,
        pix_fmt=codec.format.name if codec.format else "",
        width=codec.width,
        height=codec.height,
        num_frames=num_frames,
        fps=float(rate) if rate else 0.0,
        duration=duration,
    )


def _describe_audio(stream: AudioStream, duration: float) -> AudioStreamInfo:
    codec = stream.codec_context
    return AudioStreamInfo(
        codec=codec.name,
        profile=codec.profile,
        sample_rate=codec.sample_rate,
        channels=codec.channels,
        duration=duration,
    )
