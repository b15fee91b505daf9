"""The MP4 writer, checked by reading every file back with the probe."""

from __future__ import annotations

import resource
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from media_samples import FPS, psnr, smooth_frame, smooth_frames, stereo_tone

from runbase.errors import GenerationFailed
from runbase.media.probe import probe, read_audio, read_frames
from runbase.media.video import write_mp4

AAC_FRAME_SECONDS = 1024 / 48_000


def write_clip(path: Path, width: int, height: int, frames: int, **kwargs: object) -> Path:
    write_mp4(
        path,
        smooth_frames(width, height, frames),
        width=width,
        height=height,
        fps=FPS,
        num_frames=frames,
        **kwargs,  # type: ignore[arg-type]
    )
    return path


@pytest.mark.parametrize(("width", "height"), [(864, 496), (560, 752), (1470, 630)])
def test_video_with_audio_meets_the_output_rules(tmp_path: Path, width: int, height: int) -> None:
    path = write_clip(tmp_path / "out.mp4", width, height, 25, audio=stereo_tone(25 / FPS))

    info = probe(path)

    assert "mp4" in info.format_name
    assert info.is_faststart
    video = info.video
    assert video is not None
    assert (video.codec, video.profile, video.pix_fmt) == ("h264", "High", "yuv420p")
    assert (video.width, video.height) == (width, height)
    assert video.num_frames == 25
    assert video.fps == 24.0
    assert video.duration == pytest.approx(25 / 24, abs=1e-6)
    assert len(info.audio) == 1
    audio = info.audio[0]
    assert (audio.codec, audio.profile) == ("aac", "LC")
    assert (audio.sample_rate, audio.channels) == (48_000, 2)
    assert abs(audio.duration - video.duration) <= AAC_FRAME_SECONDS
    assert info.duration == pytest.approx(25 / 24, abs=AAC_FRAME_SECONDS)


def test_no_audio_means_no_audio_stream(tmp_path: Path) -> None:
    info = probe(write_clip(tmp_path / "silent.mp4", 640, 640, 9))

    assert info.audio == ()
    assert info.video is not None
    assert info.video.num_frames == 9


@pytest.mark.parametrize("seconds", [0.2, 3.0])
def test_audio_is_padded_or_trimmed_to_the_video(tmp_path: Path, seconds: float) -> None:
    tone = stereo_tone(seconds)
    path = write_clip(tmp_path / "out.mp4", 640, 640, 25, audio=tone)

    samples, rate = read_audio(path)
    video_seconds = 25 / 24

    assert rate == 48_000
    assert samples.shape[0] == 2
    assert abs(samples.shape[1] / rate - video_seconds) <= AAC_FRAME_SECONDS
    if seconds < video_seconds:
        # The tone is there while it lasts, silence after it.
        assert np.abs(samples[0, 2400:7200]).max() > 0.3
        assert np.abs(samples[:, 14400:]).max() < 0.01


def test_audio_at_another_rate_is_resampled_to_48k(tmp_path: Path) -> None:
    path = write_clip(
        tmp_path / "out.mp4", 640, 640, 25, audio=stereo_tone(2.0, 24_000), sample_rate=24_000
    )

    info = probe(path)
    samples, rate = read_audio(path)

    assert info.audio[0].sample_rate == 48_000
    assert abs(info.audio[0].duration - 25 / 24) <= AAC_FRAME_SECONDS
    # Still a 440 Hz tone on the left: about 880 zero crossings a second.
    left = samples[0, 4800:43200]
    crossings = np.count_nonzero(np.diff(np.signbit(left))) / (len(left) / rate)
    assert crossings == pytest.approx(880, rel=0.02)


def test_decoded_frames_match_what_was_written(tmp_path: Path) -> None:
    path = write_clip(tmp_path / "out.mp4", 864, 496, 25)

    first, middle, last = read_frames(path, [0, 12, -1])

    assert psnr(first, smooth_frame(864, 496, 0)) > 30
    assert psnr(middle, smooth_frame(864, 496, 12)) > 30
    assert psnr(last, smooth_frame(864, 496, 24)) > 30


def test_frames_are_consumed_lazily(tmp_path: Path) -> None:
    produced = 0

    def frames() -> Iterator[np.ndarray]:
        nonlocal produced
        for index in range(13):
            produced += 1
            yield smooth_frame(640, 640, index)
            # The writer encodes each frame before it asks for the next one.
            assert produced == index + 1

    write_mp4(tmp_path / "out.mp4", frames(), width=640, height=640, fps=FPS, num_frames=13)

    assert produced == 13


def assert_no_files(directory: Path) -> None:
    assert list(directory.iterdir()) == [], "a failed encode must leave nothing behind"


def test_too_few_frames_is_an_error_and_leaves_no_file(tmp_path: Path) -> None:
    target = tmp_path / "out.mp4"

    with pytest.raises(ValueError, match="expected 25 frames, got only 24"):
        write_mp4(
            target, smooth_frames(640, 640, 24), width=640, height=640, fps=FPS, num_frames=25
        )

    assert_no_files(tmp_path)


def test_too_many_frames_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="expected 5 frames, got more"):
        write_mp4(
            tmp_path / "out.mp4",
            smooth_frames(640, 640, 6),
            width=640,
            height=640,
            fps=FPS,
            num_frames=5,
        )

    assert_no_files(tmp_path)


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (np.zeros((640, 640, 4), np.uint8), r"frame 1 has shape \(640, 640, 4\)"),
        (np.zeros((640, 632, 3), np.uint8), r"frame 1 has shape \(640, 632, 3\)"),
        (np.zeros((640, 640, 3), np.float32), "dtype float32"),
        ([[0]], "frame 1 is a list"),
    ],
)
def test_a_wrong_frame_is_an_error(tmp_path: Path, frame: object, message: str) -> None:
    frames = [smooth_frame(640, 640, 0), frame, smooth_frame(640, 640, 2)]

    with pytest.raises(ValueError, match=message):
        write_mp4(
            tmp_path / "out.mp4",
            iter(frames),  # type: ignore[arg-type]
            width=640,
            height=640,
            fps=FPS,
            num_frames=3,
        )

    assert_no_files(tmp_path)


@pytest.mark.parametrize(("width", "height"), [(641, 640), (640, 479), (0, 640)])
def test_an_odd_or_empty_size_is_refused(tmp_path: Path, width: int, height: int) -> None:
    with pytest.raises(ValueError, match="must be positive and even"):
        write_mp4(tmp_path / "out.mp4", iter([]), width=width, height=height, fps=FPS, num_frames=1)


@pytest.mark.parametrize(
    "audio",
    [np.zeros((1, 48_000), np.float32), np.zeros(48_000, np.float32), np.zeros((2, 10), np.int16)],
)
def test_bad_audio_is_refused(tmp_path: Path, audio: np.ndarray) -> None:
    with pytest.raises(ValueError, match="audio must"):
        write_clip(tmp_path / "out.mp4", 640, 640, 3, audio=audio)


def test_out_of_range_audio_is_clipped_and_nan_silenced(tmp_path: Path) -> None:
    loud = stereo_tone(1.0) * 5
    loud[:, :100] = np.nan
    tamed = np.clip(np.nan_to_num(loud), -1, 1)

    got, _ = read_audio(write_clip(tmp_path / "loud.mp4", 640, 640, 25, audio=loud))
    expected, _ = read_audio(write_clip(tmp_path / "tamed.mp4", 640, 640, 25, audio=tamed))

    assert np.isfinite(got).all()
    np.testing.assert_array_equal(got, expected)


def test_an_encoder_failure_is_a_generation_failure(tmp_path: Path) -> None:
    with pytest.raises(GenerationFailed, match="encoding the MP4 failed"):
        write_clip(tmp_path / "out.mp4", 640, 640, 3, preset="no-such-preset")

    assert_no_files(tmp_path)


def test_an_engine_error_mid_stream_propagates_and_leaves_no_file(tmp_path: Path) -> None:
    def frames() -> Iterator[np.ndarray]:
        yield smooth_frame(640, 640, 0)
        raise RuntimeError("the model ran out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        write_mp4(tmp_path / "out.mp4", frames(), width=640, height=640, fps=FPS, num_frames=3)

    assert_no_files(tmp_path)


def test_an_existing_file_is_replaced_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "out.mp4"
    target.write_bytes(b"previous")

    with pytest.raises(ValueError):
        write_mp4(target, smooth_frames(640, 640, 2), width=640, height=640, fps=FPS, num_frames=3)
    assert target.read_bytes() == b"previous"

    write_clip(target, 640, 640, 3)
    assert probe(target).video is not None
    assert [p.name for p in tmp_path.iterdir()] == ["out.mp4"]


@pytest.mark.slow
def test_twelve_seconds_of_1080p_21_9_stream_in_bounded_memory(tmp_path: Path) -> None:
    width, height, count = 2206, 946, 24 * 12 + 1
    base = smooth_frame(width, height, 0)

    def frames() -> Iterator[np.ndarray]:
        for index in range(count):
            yield np.roll(base, index * 4, axis=1)

    all_frames_bytes = count * width * height * 3  # about 1.8 GB
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    tracemalloc.start()
    try:
        write_mp4(
            tmp_path / "long.mp4",
            frames(),
            width=width,
            height=height,
            fps=FPS,
            num_frames=count,
            audio=stereo_tone(12.0),
        )
        _, python_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rss_growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - rss_before

    # Numpy's allocations: a few frames at a time, not all of them.
    assert python_peak < 10 * width * height * 3
    # The whole process, x264's lookahead and reference frames included.
    assert rss_growth < all_frames_bytes / 3

    info = probe(tmp_path / "long.mp4")
    assert info.video is not None
    assert (info.video.width, info.video.height, info.video.num_frames) == (width, height, count)
    assert info.video.duration == pytest.approx(count / 24, abs=1e-6)
    assert info.is_faststart
    assert abs(info.audio[0].duration - info.video.duration) <= AAC_FRAME_SECONDS
