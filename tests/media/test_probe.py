"""The probe: it measures files rather than trusting their headers."""

from __future__ import annotations

import struct
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from media_samples import smooth_frame

from runbase.errors import GenerationFailed
from runbase.media.probe import Shape, is_faststart, probe, read_audio, read_frames, shape


def box(kind: bytes, payload: bytes = b"") -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def large_box(kind: bytes, payload: bytes = b"") -> bytes:
    """A box with the 64-bit size form (size field 1, then the real size)."""
    return struct.pack(">I4sQ", 1, kind, 16 + len(payload)) + payload


def test_probe_describes_the_sample(sample_mp4: Path) -> None:
    info = probe(sample_mp4)

    assert info.video is not None
    assert (info.video.width, info.video.height, info.video.num_frames) == (864, 496, 25)
    assert info.video.fps == 24.0
    assert [a.codec for a in info.audio] == ["aac"]
    assert info.is_faststart


def test_read_frames_in_the_order_asked(sample_mp4: Path) -> None:
    frames = read_frames(sample_mp4, [-1, 0, 24, 3])

    assert [f.shape for f in frames] == [(496, 864, 3)] * 4
    assert frames[0].dtype == np.uint8
    np.testing.assert_array_equal(frames[0], frames[2])  # -1 and 24 are the same frame
    assert read_frames(sample_mp4, []) == []


@pytest.mark.parametrize("index", [25, -26])
def test_read_frames_out_of_range(sample_mp4: Path, index: int) -> None:
    with pytest.raises(IndexError, match="out of range for 25 frames"):
        read_frames(sample_mp4, [index])


def test_read_audio_is_as_long_as_probe_says(sample_mp4: Path) -> None:
    samples, rate = read_audio(sample_mp4)

    assert rate == 48_000
    assert samples.dtype == np.float32
    assert samples.shape == (2, round(probe(sample_mp4).audio[0].duration * rate))


def write_plain_mp4(
    path: Path, *, faststart: bool, movflags: str = "", frames: int = 5, b_frames: int = 0
) -> Path:
    """An MP4 written straight with PyAV: no audio, moov at the end unless asked."""
    with av.open(str(path), mode="w", format="mp4") as container:
        if faststart or movflags:
            container.options["movflags"] = "+faststart" if faststart else movflags
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
        stream.codec_context.max_b_frames = b_frames
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(smooth_frame(320, 240, index), format="rgb24")
            frame.pts = index
            frame.time_base = Fraction(1, 24)
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return path


def test_faststart_is_read_from_the_boxes(tmp_path: Path) -> None:
    late = probe(write_plain_mp4(tmp_path / "late.mp4", faststart=False))
    early = probe(write_plain_mp4(tmp_path / "early.mp4", faststart=True))

    assert not late.is_faststart
    assert early.is_faststart
    assert late.audio == ()
    assert late.video is not None
    assert late.video.num_frames == 5


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (box(b"ftyp", b"isom") + box(b"moov") + box(b"mdat", b"xx"), True),
        (box(b"ftyp", b"isom") + box(b"free") + box(b"mdat", b"xx") + box(b"moov"), False),
        (box(b"ftyp") + large_box(b"free", b"\0" * 8) + box(b"moov"), True),
        (box(b"ftyp") + large_box(b"mdat", b"\0" * 8) + box(b"moov"), False),
        (box(b"ftyp") + struct.pack(">I4s", 0, b"free"), False),  # box runs to the end
        (box(b"ftyp") + struct.pack(">I4s", 4, b"junk") + box(b"moov"), False),  # corrupt
        (b"\0\0\0", False),
        (b"", False),
    ],
)
def test_is_faststart_walks_top_level_boxes(tmp_path: Path, data: bytes, expected: bool) -> None:
    path = tmp_path / "boxes.mp4"
    path.write_bytes(data)

    assert is_faststart(path) is expected


def test_a_file_that_is_not_media_is_a_generation_failure(tmp_path: Path) -> None:
    path = tmp_path / "broken.mp4"
    path.write_bytes(b"this is not an mp4 at all" * 100)

    with pytest.raises(GenerationFailed, match=r"broken\.mp4 is not a readable media file"):
        probe(path)


def test_a_missing_file_is_a_generation_failure(tmp_path: Path) -> None:
    with pytest.raises(GenerationFailed, match=r"missing\.mp4"):
        probe(tmp_path / "missing.mp4")


def test_read_audio_without_audio_is_refused(tmp_path: Path) -> None:
    path = write_plain_mp4(tmp_path / "silent.mp4", faststart=True)

    with pytest.raises(ValueError, match="no audio stream"):
        read_audio(path)


def test_shape_reads_from_the_index_what_probe_measures(sample_mp4: Path) -> None:
    assert shape(sample_mp4) == Shape(864, 496, 25, has_video=True, has_audio=True)


@pytest.mark.parametrize(
    ("options", "frames"),
    [
        ({"faststart": True}, 7),
        ({"faststart": False, "b_frames": 2}, 30),  # B-frames: an edit list, reordered pts
        ({"faststart": False, "movflags": "frag_keyframe+empty_moov"}, 12),  # no sample table
    ],
    ids=["faststart", "b-frames", "fragmented"],
)
def test_shape_counts_the_frames_probe_counts(
    tmp_path: Path, options: dict[str, object], frames: int
) -> None:
    path = write_plain_mp4(tmp_path / "v.mp4", frames=frames, **options)  # type: ignore[arg-type]
    info = probe(path)
    assert info.video is not None and info.video.num_frames == frames
    assert shape(path) == Shape(320, 240, frames, has_video=True, has_audio=False)


def test_shape_of_a_file_without_video(tmp_path: Path) -> None:
    path = tmp_path / "sound.m4a"
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("aac", rate=48_000)
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 1024), np.float32), format="fltp", layout="mono"
        )
        frame.sample_rate, frame.pts = 48_000, 0
        container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    assert shape(path) == Shape(0, 0, 0, has_video=False, has_audio=True)
    with pytest.raises(GenerationFailed):
        shape(tmp_path / "missing.mp4")
