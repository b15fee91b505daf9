"""Audio utilities shared by engines: loudness, peak limiting, channels, mixing, fades.

Conventions, so that engines can pass arrays around without asking:

- samples are float32 in [-1, 1];
- mono is shape `(n,)`, multichannel is channels-first `(channels, n)` (PyAV's planar
  layout, so the MP4 writer takes them as they are);
- the output rate is `SAMPLE_RATE` (48 kHz, what the contract's AAC track carries).

Loudness is measured as ITU-R BS.1770-4 defines it (the meter behind EBU R 128): K-weighted
mean power in 400 ms blocks every 100 ms, gated at -70 LUFS and then 10 LU under the
gated mean. The gating needs at least one block: shorter clips are measured as a seamless
loop of themselves, which has the same loudness as the clip itself. Resampling is
libswresample's (FFmpeg's, through PyAV, which the MP4 writer loads anyway).
"""

from __future__ import annotations

import functools
import math
from fractions import Fraction

import av
import numpy as np
import numpy.typing as npt

from runbase.media.dsp import Filter, moving_average, sliding_min

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
_LOUDNESS_STEP_S = 0.1  # blocks overlap by 75%
_ABSOLUTE_GATE_LUFS = -70.0
_RELATIVE_GATE_LU = 10.0
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
    """Integrated loudness in LUFS of mono `(n,)` or channels-first `(c, n)` samples (every
    channel weighted 1.0, as BS.1770 weighs left, right and centre).

    Returns `-inf` for silence (every block under the -70 LUFS absolute gate).
    """
    frames = np.asarray(samples, dtype=np.float64)
    frames = frames[np.newaxis, :] if frames.ndim == 1 else frames
    if frames.shape[-1] == 0 or float(np.max(np.abs(frames))) < _SILENCE_PEAK:
        return -math.inf
    block = round(_LOUDNESS_BLOCK_S * sample_rate)
    if frames.shape[-1] < block:
        # A loop of the clip has the clip's loudness: measure that rather than guess.
        frames = np.tile(frames, (1, -(-block // frames.shape[-1])))
    weighted = _k_weighting(sample_rate).apply(frames)
    step = round(_LOUDNESS_STEP_S * sample_rate)
    starts = np.arange((weighted.shape[-1] - block) // step + 1) * step
    energy = np.concatenate(
        [np.zeros((len(weighted), 1)), np.cumsum(weighted**2, axis=-1)], axis=-1
    )
    # Each block's mean square, summed over the channels.
    power = ((energy[:, starts + block] - energy[:, starts]) / block).sum(axis=0)
    with np.errstate(divide="ignore"):
        blocks = -0.691 + 10.0 * np.log10(power)
    loud = power[blocks > _ABSOLUTE_GATE_LUFS]
    if loud.size == 0:
        return -math.inf
    relative_gate = -0.691 + 10.0 * math.log10(float(loud.mean())) - _RELATIVE_GATE_LU
    kept = power[(blocks > _ABSOLUTE_GATE_LUFS) & (blocks > relative_gate)]
    return -0.691 + 10.0 * math.log10(float(kept.mean()))


@functools.cache
def _k_weighting(sample_rate: int) -> Filter:
    """BS.1770's K-weighting: a high shelf (+4 dB above about 1.7 kHz: the head's effect)
    followed by the RLB high-pass (about 38 Hz).

    The standard publishes coefficients for 48 kHz only; these analog parameters, fitted to
    them in the literature, give those coefficients at 48 kHz and the same curve at any
    other rate.
    """
    k = math.tan(math.pi * 1681.974450955533 / sample_rate)
    q = 0.7071752369554196
    high = 10.0 ** (3.999843853973347 / 20.0)
    band = high**0.4996667741545416
    norm = 1.0 + k / q + k * k
    shelf = Filter.biquad(
        (
            (high + band * k / q + k * k) / norm,
            2.0 * (k * k - high) / norm,
            (high - band * k / q + k * k) / norm,
        ),
        (1.0, 2.0 * (k * k - 1.0) / norm, (1.0 - k / q + k * k) / norm),
    )
    k = math.tan(math.pi * 38.13547087602444 / sample_rate)
    q = 0.5003270373238773
    norm = 1.0 + k / q + k * k
    high_pass = Filter.biquad(
        (1.0, -2.0, 1.0), (1.0, 2.0 * (k * k - 1.0) / norm, (1.0 - k / q + k * k) / norm)
    )
    return shelf.then(high_pass)


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
    held = sliding_min(needed, 2 * window + 1, edge="nearest")
    gain = np.minimum(moving_average(held, window, edge="nearest"), needed)
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
    """Resample along the last axis with libswresample; the result has exactly
    round(n * to_rate / from_rate) samples per channel."""
    array = np.asarray(samples, dtype=np.float32)
    if from_rate == to_rate:
        return array.copy()
    rows = array[np.newaxis, :] if array.ndim == 1 else array
    length = round(rows.shape[-1] * Fraction(to_rate, from_rate))
    if rows.shape[0] <= 2:
        result = _swresample(rows, from_rate, to_rate, length)
    else:  # layouts beyond stereo: one channel at a time
        result = np.concatenate(
            [_swresample(row[np.newaxis], from_rate, to_rate, length) for row in rows]
        )
    return result[0] if array.ndim == 1 else result


def _swresample(rows: Samples, from_rate: int, to_rate: int, length: int) -> Samples:
    layout = "mono" if rows.shape[0] == 1 else "stereo"
    resampler = av.AudioResampler(format="fltp", layout=layout, rate=to_rate)
    frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(rows), format="fltp", layout=layout)
    frame.sample_rate = from_rate
    frame.pts = 0
    frame.time_base = Fraction(1, from_rate)
    chunks = [f.to_ndarray() for f in [*resampler.resample(frame), *resampler.resample(None)]]
    out = np.zeros((rows.shape[0], length), dtype=np.float32)
    if chunks:
        joined = np.concatenate(chunks, axis=1)[:, :length]
        out[:, : joined.shape[1]] = joined
    return out
