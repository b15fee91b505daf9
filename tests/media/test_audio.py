"""Loudness, peak limiting, channels, mixing and fades."""

from __future__ import annotations

import math

import numpy as np
import pyloudnorm
import pytest
from scipy.signal import lfilter

from runbase.media.audio import (
    SAMPLE_RATE,
    _k_weighting,
    apply_fades,
    limit_peaks,
    measure_loudness,
    measure_peak_dbfs,
    mix,
    normalize_loudness,
    resample_audio,
    to_stereo,
)

# ITU-R BS.1770-4, tables 1 and 2: the K-weighting's two stages at 48 kHz.
SHELF = (
    [1.53512485958697, -2.69169618940638, 1.19839281085285],
    [1.0, -1.69065929318241, 0.73248077421585],
)
HIGH_PASS = ([1.0, -2.0, 1.0], [1.0, -1.99004745483398, 0.99007225036621])


def sine(seconds: float, frequency: float = 997.0, amplitude: float = 1.0) -> np.ndarray:
    t = np.arange(round(seconds * SAMPLE_RATE)) / SAMPLE_RATE
    return (amplitude * np.sin(2 * math.pi * frequency * t)).astype(np.float32)


def speech_like(seconds: float, seed: int = 0) -> np.ndarray:
    """Noise in bursts with sharp clicks: a crest factor like speech's, or worse."""
    rng = np.random.default_rng(seed)
    n = round(seconds * SAMPLE_RATE)
    bursts = (np.sin(2 * math.pi * 3.0 * np.arange(n) / SAMPLE_RATE) > 0.3).astype(np.float32)
    signal = 0.05 * rng.standard_normal((2, n)).astype(np.float32) * bursts
    signal[:, :: SAMPLE_RATE // 5] = 0.9
    return signal


def reference_loudness(samples: np.ndarray) -> float:
    return float(pyloudnorm.Meter(SAMPLE_RATE).integrated_loudness(samples.T.astype(np.float64)))


def test_measure_loudness_of_a_full_scale_sine_matches_bs1770() -> None:
    # BS.1770 calibration: a 0 dBFS 997 Hz sine in one channel reads -3.01 LUFS; in both
    # channels (channels-first) the powers add up to 0 LUFS.
    assert measure_loudness(sine(2.0), SAMPLE_RATE) == pytest.approx(-3.01, abs=0.1)
    assert measure_loudness(np.stack([sine(2.0)] * 2), SAMPLE_RATE) == pytest.approx(0.0, abs=0.1)


def bs1770_loudness(samples: np.ndarray) -> float:
    """The standard's integrated loudness, written out plainly with its own coefficients."""
    weighted = lfilter(*HIGH_PASS, lfilter(*SHELF, samples, axis=-1), axis=-1)
    block, step = 19_200, 4_800  # 400 ms blocks every 100 ms at 48 kHz
    starts = range(0, weighted.shape[-1] - block + 1, step)
    power = np.array([np.sum(np.mean(weighted[:, s : s + block] ** 2, axis=-1)) for s in starts])
    blocks = -0.691 + 10 * np.log10(power)
    loud = blocks > -70
    relative = -0.691 + 10 * np.log10(power[loud].mean()) - 10
    return float(-0.691 + 10 * np.log10(power[loud & (blocks > relative)].mean()))


def test_k_weighting_is_the_standards_at_48_khz() -> None:
    weighting = _k_weighting(SAMPLE_RATE)
    gain = weighting.gain
    numerator = np.polymul(SHELF[0], HIGH_PASS[0])
    denominator = np.polymul(SHELF[1], HIGH_PASS[1])

    assert np.allclose(np.real(np.poly(weighting.zeros)) * gain, numerator, atol=1e-9)
    assert np.allclose(np.real(np.poly(weighting.poles)), denominator, atol=1e-9)


@pytest.mark.parametrize("seed", range(4))
def test_measure_loudness_gates_as_bs1770_says(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(SAMPLE_RATE, 6 * SAMPLE_RATE))
    # Bursts and pauses of varying level, so that both gates drop blocks.
    envelope = np.sin(np.linspace(0, rng.uniform(5, 40), n)) ** 4 * rng.uniform(0.01, 1.0)
    samples = rng.standard_normal((2, n)) * envelope

    assert measure_loudness(samples, SAMPLE_RATE) == pytest.approx(
        bs1770_loudness(samples), abs=1e-6
    )
    # pyloudnorm counts blocks a little differently (and rounds its filter): close, not equal.
    assert measure_loudness(samples, SAMPLE_RATE) == pytest.approx(
        reference_loudness(samples), abs=0.2
    )


def test_measure_loudness_of_silence_is_minus_infinity() -> None:
    assert measure_loudness(np.zeros((2, SAMPLE_RATE), np.float32), SAMPLE_RATE) == -math.inf
    assert measure_loudness(np.zeros(0, np.float32), SAMPLE_RATE) == -math.inf


def test_measure_loudness_of_a_clip_shorter_than_a_gating_block() -> None:
    short = sine(0.1, amplitude=0.5)

    assert measure_loudness(short, SAMPLE_RATE) == pytest.approx(
        measure_loudness(sine(2.0, amplitude=0.5), SAMPLE_RATE), abs=0.3
    )


@pytest.mark.parametrize("target", [-16.0, -23.0])
def test_normalize_loudness_reaches_the_target_with_peaks_under_the_ceiling(
    target: float,
) -> None:
    normalized = normalize_loudness(speech_like(3.0), SAMPLE_RATE, target_lufs=target)

    assert normalized.dtype == np.float32 and normalized.shape == (2, 3 * SAMPLE_RATE)
    assert reference_loudness(normalized) == pytest.approx(target, abs=0.5)
    assert measure_peak_dbfs(normalized) <= -1.0 + 1e-6


def test_normalize_loudness_leaves_silence_alone() -> None:
    silence = np.zeros((2, SAMPLE_RATE), np.float32)

    assert np.array_equal(normalize_loudness(silence, SAMPLE_RATE), silence)


def test_normalize_loudness_handles_a_short_clip() -> None:
    normalized = normalize_loudness(sine(0.2, amplitude=0.01), SAMPLE_RATE)

    assert measure_loudness(normalized, SAMPLE_RATE) == pytest.approx(-16.0, abs=0.5)
    assert measure_peak_dbfs(normalized) <= -1.0 + 1e-6


def test_limit_peaks_holds_the_ceiling_and_spares_quiet_audio() -> None:
    loud = speech_like(1.0) * 3.0
    quiet = sine(1.0, amplitude=0.5)

    assert measure_peak_dbfs(limit_peaks(loud, SAMPLE_RATE, ceiling_dbfs=-1.0)) <= -1.0 + 1e-6
    assert np.array_equal(limit_peaks(quiet, SAMPLE_RATE, ceiling_dbfs=-1.0), quiet)


def test_to_stereo_pans_with_constant_power() -> None:
    mono = sine(0.1)

    centre = to_stereo(mono)
    left = to_stereo(mono, pan=-1.0)

    assert centre.shape == (2, len(mono))
    assert np.allclose(centre[0], centre[1])
    assert np.allclose(left[1], 0.0, atol=1e-6)
    assert np.sum(centre**2) == pytest.approx(np.sum(left**2), rel=1e-4)


def test_mix_pads_short_tracks_and_cuts_at_length() -> None:
    long = np.ones((2, 100), np.float32)
    short = np.ones(40, np.float32)

    mixed = mix(long, short)
    cut = mix(long, short, length=50)

    assert mixed.shape == (2, 100)
    assert mixed[0, 10] == pytest.approx(1.0 + math.cos(math.pi / 4))
    assert mixed[0, 60] == pytest.approx(1.0)
    assert cut.shape == (2, 50)


def test_apply_fades_starts_and_ends_at_zero() -> None:
    faded = apply_fades(
        np.ones((2, SAMPLE_RATE), np.float32), SAMPLE_RATE, fade_in=0.1, fade_out=0.2
    )

    assert np.all(faded[:, 0] == 0.0) and np.all(faded[:, -1] == 0.0)
    assert np.all(faded[:, SAMPLE_RATE // 2] == 1.0)
    assert np.all(np.diff(faded[0, : SAMPLE_RATE // 10]) >= 0.0)


def test_resample_audio_changes_the_rate_exactly() -> None:
    resampled = resample_audio(sine(1.0)[:22_050], 22_050, SAMPLE_RATE)

    assert resampled.dtype == np.float32
    assert len(resampled) == SAMPLE_RATE


@pytest.mark.parametrize("channels", [1, 2, 3])
def test_resample_audio_keeps_the_waveform(channels: int) -> None:
    t_in = np.arange(22_050) / 22_050
    tone = (0.5 * np.sin(2 * math.pi * 440.0 * t_in)).astype(np.float32)
    samples = tone if channels == 1 else np.stack([tone] * channels)

    resampled = resample_audio(samples, 22_050, SAMPLE_RATE)

    t_out = np.arange(SAMPLE_RATE) / SAMPLE_RATE
    expected = 0.5 * np.sin(2 * math.pi * 440.0 * t_out)
    middle = slice(SAMPLE_RATE // 10, -SAMPLE_RATE // 10)  # the filter's edges aside
    assert resampled.shape == ((SAMPLE_RATE,) if channels == 1 else (channels, SAMPLE_RATE))
    assert np.allclose(resampled[..., middle], expected[middle], atol=2e-3)
