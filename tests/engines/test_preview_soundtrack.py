"""The preview engine's soundtrack: dialogue placement, ambience, music, loudness."""

from __future__ import annotations

import shutil

import numpy as np
import pyloudnorm
import pytest

from runbase.engines.preview.soundtrack import Soundtrack, compose_soundtrack

pytestmark = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="espeak-ng is not installed"
)

RATE = 48_000
TWO_LANGUAGES = (
    'In a quiet room a man asks "Where are you going tonight?" '
    "and the woman answers 「東京へ行きます」"
)
LONG_LINE = (
    'On the beach he shouts "I told you we need to leave right now before the storm '
    'reaches the town and floods every single street" and she says "Okay, I am coming"'
)


@pytest.fixture(scope="module")
def two_languages() -> Soundtrack:
    return compose_soundtrack(TWO_LANGUAGES, duration=8.0, seed=3)


@pytest.fixture(scope="module")
def long_line() -> Soundtrack:
    return compose_soundtrack(LONG_LINE, duration=4.0, seed=5)


def loudness(samples: np.ndarray) -> float:
    return float(pyloudnorm.Meter(RATE).integrated_loudness(samples.T.astype(np.float64)))


def frame_energy_db(samples: np.ndarray, frame_s: float = 0.02) -> np.ndarray:
    frame = round(frame_s * RATE)
    count = samples.shape[-1] // frame
    frames = samples[:, : count * frame].reshape(2, count, frame)
    return 10 * np.log10(np.mean(frames.astype(np.float64) ** 2, axis=(0, 2)) + 1e-12)


def assert_lines_inside_and_apart(soundtrack: Soundtrack, duration: float) -> None:
    for line in soundtrack.lines:
        assert 0.25 - 1e-9 <= line.start < line.end <= duration - 0.25 + 1e-9
    for first, second in zip(soundtrack.lines, soundtrack.lines[1:], strict=False):
        assert second.start - first.end >= 0.29


def test_samples_are_float32_stereo_as_long_as_the_clip() -> None:
    duration = 97 / 24  # a 4 s run has 97 frames at 24 fps
    soundtrack = compose_soundtrack("a quiet room", duration=duration, seed=1)

    assert soundtrack.samples.dtype == np.float32
    assert soundtrack.samples.shape == (2, round(duration * RATE))


def test_two_languages_are_spoken_in_two_separate_intervals(two_languages: Soundtrack) -> None:
    english, japanese = two_languages.lines
    assert (english.language, japanese.language) == ("en", "ja")
    assert (english.text, japanese.text) == ("Where are you going tonight?", "東京へ行きます")
    assert_lines_inside_and_apart(two_languages, 8.0)

    # Speech stands well above the room tone: frames inside each line are mostly loud,
    # frames before, between and after the lines are all quiet.
    energy = frame_energy_db(two_languages.samples)
    times = (np.arange(len(energy)) + 0.5) * 0.02
    inside = [(times > line.start) & (times < line.end) for line in two_languages.lines]
    outside = ~(inside[0] | inside[1])
    threshold = float(np.median(energy[outside])) + 10.0
    for mask in inside:
        assert np.mean(energy[mask] > threshold) > 0.5
    margin = 0.06  # a frame that straddles a line's edge may hold some of it
    near = [
        (times > line.start - margin) & (times < line.end + margin) for line in two_languages.lines
    ]
    quiet = ~(near[0] | near[1])
    between = quiet & (times > english.end) & (times < japanese.start)
    assert between.any()
    assert np.all(energy[quiet] < threshold)


def test_loudness_is_minus_16_lufs_with_peaks_under_minus_1_dbfs(
    two_languages: Soundtrack, long_line: Soundtrack
) -> None:
    for soundtrack in (
        two_languages,
        long_line,
        compose_soundtrack("rain on a window, soft piano music", duration=4.0, seed=2),
        compose_soundtrack("a crackling campfire", duration=4.0, seed=2),
    ):
        assert loudness(soundtrack.samples) == pytest.approx(-16.0, abs=1.0)
        assert float(np.max(np.abs(soundtrack.samples))) <= 10 ** (-1 / 20) + 1e-6


def test_a_line_too_long_for_the_clip_is_shortened_at_a_word_boundary(
    long_line: Soundtrack,
) -> None:
    first, second = long_line.lines
    assert any(note.startswith("line 1 shortened to fit the 4 s clip") for note in long_line.notes)
    assert first.text.endswith("…")
    spoken = first.text.removesuffix("…")
    original = "I told you we need to leave right now before the storm"
    assert original.startswith(spoken) and original[len(spoken)] == " "
    assert second.text == "Okay, I am coming"
    assert_lines_inside_and_apart(long_line, 4.0)


def test_a_long_chinese_line_is_cut_between_characters() -> None:
    text = "你好，我们今天去公园散步吧，然后去看电影，再一起吃晚饭。"
    soundtrack = compose_soundtrack(f"「{text}」", duration=4.0, seed=1)

    (line,) = soundtrack.lines
    assert line.language == "zh"
    assert text.startswith(line.text.removesuffix("…")) and line.text != text
    assert soundtrack.notes and "line 1 shortened" in soundtrack.notes[0]
    assert_lines_inside_and_apart(soundtrack, 4.0)


def test_lines_that_cannot_fit_are_dropped_with_a_note() -> None:
    prompt = " ".join(
        f'"Line number {word} is here."' for word in ["one", "two", "three", "four", "five", "six"]
    )
    soundtrack = compose_soundtrack(prompt, duration=4.0, seed=1)

    assert 1 <= len(soundtrack.lines) < 6
    assert any("dropped" in note for note in soundtrack.notes)
    assert_lines_inside_and_apart(soundtrack, 4.0)


def test_same_prompt_seed_and_duration_give_identical_samples(two_languages: Soundtrack) -> None:
    again = compose_soundtrack(TWO_LANGUAGES, duration=8.0, seed=3)
    other_seed = compose_soundtrack(TWO_LANGUAGES, duration=8.0, seed=4)

    assert np.array_equal(again.samples, two_languages.samples)
    assert again.lines == two_languages.lines
    assert not np.array_equal(other_seed.samples, two_languages.samples)


@pytest.mark.parametrize(
    ("prompt", "ambience"),
    [
        ("heavy rain on a tin roof", "rain"),
        ("waves rolling onto the beach", "sea"),
        ("a lonely desert, wind howling", "wind"),
        ("a busy city street with traffic", "city"),
        ("birds singing in a misty forest", "forest"),
        ("a crackling fireplace", "fire"),
        ("a quiet office", "room"),
        ('On a city street she sighs "I miss the ocean"', "city"),
        ('She looks up: "Is it raining again?"', "rain"),
        ("城市的街道上下着雨", "rain"),
    ],
)
def test_ambience_follows_the_prompt(prompt: str, ambience: str) -> None:
    soundtrack = compose_soundtrack(prompt, duration=1.0, seed=0)

    assert soundtrack.ambience == ambience
    assert np.max(np.abs(soundtrack.samples)) > 0.01


def spectral_flatness(samples: np.ndarray) -> float:
    power = np.abs(np.fft.rfft(samples[0].astype(np.float64))) ** 2 + 1e-20
    return float(np.exp(np.mean(np.log(power))) / np.mean(power))


@pytest.mark.parametrize(
    ("prompt", "has_music"),
    [
        ("a quiet room, soft piano music", True),
        ("a quiet room where she plays guitar", True),
        ("a quiet room, no music", False),
        ("a quiet room where she sings softly", True),
        ("a quiet room", False),
    ],
)
def test_music_plays_only_when_asked_for(prompt: str, has_music: bool) -> None:
    soundtrack = compose_soundtrack(prompt, duration=3.0, seed=4)
    room_tone = compose_soundtrack("a quiet room", duration=3.0, seed=4)

    assert soundtrack.has_music is has_music
    # Music is tonal: its spectrum has peaks, where room tone is smooth noise.
    tonal = spectral_flatness(soundtrack.samples) < 0.5 * spectral_flatness(room_tone.samples)
    assert tonal is has_music


def test_singing_birds_are_ambience_not_music() -> None:
    soundtrack = compose_soundtrack("birds singing in the woods", duration=1.0, seed=4)

    assert (soundtrack.ambience, soundtrack.has_music) == ("forest", False)


def test_duration_must_be_positive() -> None:
    with pytest.raises(ValueError, match="duration"):
        compose_soundtrack("a room", duration=0.0, seed=1)
