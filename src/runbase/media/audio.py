"""Audio utilities shared by engines: loudness, peak limiting, channels, mixing, fades.

Conventions, so that engines can pass arrays around without asking:

- samples are float32 in [-1, 1];
- mono is shape `(n,)`, multichannel is channels-first `(channels, n)` (PyAV's planar
  layout, so the MP4 writer takes them as they are);
- the output rate is `SAMPLE_RATE` (48 kHz, what the contract's AAC track carries).

Loudness is measured with pyloudnorm (ITU-R BS.1770-4, the meter behind EBU R 128), whose
gating needs at least one 400 ms block: shorter clips are measured as a seamless loop of
themselves, which has the same loudness as the clip itself.
"""

from __future__ import annotations

import math
import warnings
from fractions import Fraction

import numpy as np
import numpy.typing as npt
import pyloudnorm
from scipy.ndimage import minimum_filter1d, uniform_filter1d
from scipy.signal import resample_poly

__all__ = [
    "SAMPLE_RATE",
    "apply_fades",
    "db_to_gain",
    "limit_peaks",
    "measure_loudness",
    "measure_peak_dbfs",
    "mix",
    "normalize_loudness",
    "resample_audio",
    "to_stereo",
]

SAMPLE_RATE = 48_000

Samples = npt.NDArray[np.float32]

_LOUDNESS_BLOCK_S = 0.4
_SILENCE_PEAK = 1e-6
_LIMITER_WINDOW_S = 0.005
_LOUDNESS_PASSES = 4


def db_to_gain(db: float) -> float:
    """Turn decibels into a linear amplitude factor."""
    return float(10.0 ** (db / 20.0))


def measure_peak_dbfs(samples: npt.NDArray[np.floating]) -> float:
    """The sample peak in dBFS; `-inf` for digital silence."""
    peak = float(np.max(np.abs(samples))) if samples.size else 0.0
    return 20.0 * math.log10(peak) if peak > 0.0 else -math.inf


def measure_loudness(samples: npt.NDArray[np.floating], sample_rate: int) -> float:
    """Integrated loudness in LUFS of mono `(n,)` or channels-first `(c, n)` samples.

    Returns `-inf` for silence (every block under the -70 LUFS absolute gate).
    """
    frames = np.asarray(samples, dtype=np.float64)
    frames = frames[np.newaxis, :] if frames.ndim == 1 else frames
    if frames.shape[-1] == 0 or float(np.max(np.abs(frames))) < _SILENCE_PEAK:
        return -math.inf
    min_length = math.ceil(_LOUDNESS_BLOCK_S * sample_rate) + 1
    if frames.shape[-1] < min_length:
        # pyloudnorm refuses clips shorter than its 400 ms gating block; a loop of the clip
        # has the clip's loudness, so measure that instead of guessing from RMS.
        repeats = -(-min_length // frames.shape[-1])
        frames = np.tile(frames, (1, repeats))
    meter = pyloudnorm.Meter(sample_rate)
    # pyloudnorm takes log10 of zero-energy blocks outside its own warning guards; with
    # pytest's filterwarnings=error that RuntimeWarning would become an exception.
    with warnings.catch_warnings(), np.errstate(divide="ignore", invalid="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        loudness = float(meter.integrated_loudness(frames.T))
    return loudness if math.isfinite(loudness) else -math.inf


def limit_peaks(samples: Samples, sample_rate: int, *, ceiling_dbfs: float = -1.0) -> Samples:
    """A look-ahead brickwall limiter: no sample exceeds `ceiling_dbfs` afterwards.

    The gain each sample needs is held over a 10 ms window (a minimum filter), then smoothed
    by a 5 ms moving average. Every sample of the average lies inside the held window, so
    the smoothed gain never rises above what the loudest nearby sample needs: the ceiling
    holds exactly, with gain changes spread over milliseconds instead of clicks. All
    channels share one gain so the stereo image does not wander.
    """
    ceiling = db_to_gain(ceiling_dbfs)
    frames = samples[np.newaxis, :] if samples.ndim == 1 else samples
    if frames.shape[-1] == 0:
        return samples.astype(np.float32, copy=True)
    level = np.max(np.abs(frames), axis=0).astype(np.float64)
    if float(level.max()) <= ceiling:
        return samples.astype(np.float32, copy=True)
    window = max(1, int(_LIMITER_WINDOW_S * sample_rate))
    needed = np.minimum(1.0, ceiling / np.maximum(level, 1e-12))
    held = minimum_filter1d(needed, size=2 * window + 1, mode="nearest")
    gain = np.minimum(uniform_filter1d(held, size=window, mode="nearest"), needed)
    limited = (frames * gain).astype(np.float32)
    # Float rounding may leave a sample a hair above the ceiling; clip that hair.
    np.clip(limited, -ceiling, ceiling, out=limited)
    result: Samples = limited[0] if samples.ndim == 1 else limited
    return result


def normalize_loudness(
    samples: npt.NDArray[np.floating],
    sample_rate: int,
    *,
    target_lufs: float = -16.0,
    peak_dbfs: float = -1.0,
) -> Samples:
    """Bring samples to `target_lufs` integrated loudness with sample peaks at most `peak_dbfs`.

    A plain gain would let speech peaks (a crest factor of 15 dB or more) pass 0 dBFS, and
    turning the whole clip down to respect the ceiling would miss the loudness target. So the
    gain is applied, the peaks are limited, and the loudness is measured again until it is
    within 0.1 LU (the limiter only takes a little off). Silence is returned unchanged.
    """
    result = np.asarray(samples, dtype=np.float32).copy()
    loudness = measure_loudness(result, sample_rate)
    if not math.isfinite(loudness):
        return result
    gain_db = target_lufs - loudness
    source = result
    for _ in range(_LOUDNESS_PASSES):
        result = limit_peaks(
            (source * db_to_gain(gain_db)).astype(np.float32),
            sample_rate,
            ceiling_dbfs=peak_dbfs,
        )
        error = target_lufs - measure_loudness(result, sample_rate)
        if abs(error) < 0.1 or not math.isfinite(error):
            break
        gain_db += error
    return result


def to_stereo(samples: npt.NDArray[np.floating], *, pan: float = 0.0) -> Samples:
    """Mono `(n,)` to stereo `(2, n)` with a constant-power pan in [-1 (left), 1 (right)].

    Stereo input is returned as float32 unchanged (the pan applies to mono sources only).
    """
    array = np.asarray(samples, dtype=np.float32)
    if array.ndim == 2:
        if array.shape[0] != 2:
            raise ValueError(f"expected mono or 2 channels, got {array.shape[0]}")
        return array.copy()
    angle = (min(1.0, max(-1.0, pan)) + 1.0) * math.pi / 4.0
    # At the centre both channels get cos(pi/4), -3 dB: the sum keeps its loudness.
    gains = np.array([[math.cos(angle)], [math.sin(angle)]], dtype=np.float32)
    return gains * array[np.newaxis, :]


def mix(*tracks: npt.NDArray[np.floating], length: int | None = None) -> Samples:
    """Sum tracks into one stereo `(2, length)` array.

    Mono tracks are centred; shorter tracks are padded with silence and longer ones cut at
    `length` (default: the longest track).
    """
    if length is None:
        length = max((track.shape[-1] for track in tracks), default=0)
    out = np.zeros((2, length), dtype=np.float32)
    for track in tracks:
        stereo = to_stereo(track)
        n = min(length, stereo.shape[-1])
        out[:, :n] += stereo[:, :n]
    return out


def apply_fades(
    samples: npt.NDArray[np.floating],
    sample_rate: int,
    *,
    fade_in: float = 0.0,
    fade_out: float = 0.0,
) -> Samples:
    """Raised-cosine fades of `fade_in` and `fade_out` seconds at the ends (no clicks)."""
    result = np.asarray(samples, dtype=np.float32).copy()
    n = result.shape[-1]
    for seconds, at_start in ((fade_in, True), (fade_out, False)):
        count = min(n, round(seconds * sample_rate))
        if count <= 0:
            continue
        ramp = (0.5 - 0.5 * np.cos(np.linspace(0.0, math.pi, count))).astype(np.float32)
        if at_start:
            result[..., :count] *= ramp
        else:
            result[..., n - count :] *= ramp[::-1]
    return result


def resample_audio(samples: npt.NDArray[np.floating], from_rate: int, to_rate: int) -> Samples:
    """Resample along the last axis with a polyphase filter (exact rational ratio)."""
    array = np.asarray(samples, dtype=np.float32)
    if from_rate == to_rate:
        return array.copy()
    ratio = Fraction(to_rate, from_rate)
    resampled = resample_poly(array, ratio.numerator, ratio.denominator, axis=-1)
    return np.asarray(resampled, dtype=np.float32)
