"""The ambience under a clip's dialogue, synthesized from noise: rain, sea, wind, city,
forest, fire, or a room's quiet tone.

    synthesize_ambience("rain", rng, length) -> (2, length) float64 at 48 kHz

Each is filtered noise shaped by slow random curves (gusts, swells, passing cars) and
sparse clicks (drops, crackles), all drawn from `rng`: the same generator state gives the
same samples. The level is arbitrary; the soundtrack sets it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import numpy.typing as npt

from runbase.media.audio import SAMPLE_RATE, to_stereo
from runbase.media.dsp import Filter, Kind

__all__ = ["synthesize_ambience"]

Signal = npt.NDArray[np.float64]

_ENVELOPE_STEP = SAMPLE_RATE // 200  # slow gain curves are computed every 5 ms


def synthesize_ambience(name: str, rng: np.random.Generator, length: int) -> Signal:
    """`length` stereo samples of the ambience `name` ("rain", "sea", ... "room")."""
    return _SYNTHS[name](rng, length)


def _noise(rng: np.random.Generator, length: int) -> Signal:
    """Decorrelated white noise for the two channels: a wide, natural stereo bed."""
    return rng.standard_normal((2, length))


def _filter(
    signal: Signal, kind: Kind, cutoff: float | tuple[float, float], order: int = 2
) -> Signal:
    return Filter.butterworth(order, cutoff, kind, SAMPLE_RATE).apply(signal)


def _drift(
    rng: np.random.Generator, length: int, rate_hz: float, low: float, high: float
) -> Signal:
    """A slow random curve between `low` and `high`, per channel (gusts, swells, flicker)."""
    points = max(2, math.ceil(length / SAMPLE_RATE * rate_hz) + 2)
    values = rng.uniform(low, high, (2, points))
    grid = _envelope_grid(length)
    position = grid * (points - 1) / grid[-1]
    index = np.minimum(position.astype(np.int64), points - 2)
    fraction = position - index
    # Smoothstep between control points: no corners for the ear to catch.
    eased = fraction * fraction * (3.0 - 2.0 * fraction)
    return _expand_envelope(values[:, index] * (1.0 - eased) + values[:, index + 1] * eased, length)


def _envelope_grid(length: int) -> npt.NDArray[np.int64]:
    """Sample positions every 5 ms, past the end: where slow gain curves are computed."""
    return np.arange(0, length + _ENVELOPE_STEP, _ENVELOPE_STEP)


def _expand_envelope(curves: Signal, length: int) -> Signal:
    """Interpolate `(2, grid)` gain curves from `_envelope_grid` to every sample."""
    grid = _envelope_grid(length)
    where = np.arange(length)
    return np.stack([np.interp(where, grid, curve) for curve in curves])


def _impulses(rng: np.random.Generator, length: int, per_second: float, heavy: bool) -> Signal:
    """Sparse random clicks (a Poisson process) with random, sometimes large, amplitudes."""
    train = np.zeros((2, length))
    # Between clicks a filter's output decays into subnormal floats, which the CPU handles
    # some 10x slower. A -240 dB tone at Nyquist keeps the filter state normal, inaudibly.
    train[:, ::2] = 1e-12
    count = rng.poisson(per_second * length / SAMPLE_RATE, size=2)
    for channel in (0, 1):
        where = rng.integers(0, length, count[channel])
        size = rng.pareto(2.5, count[channel]) if heavy else rng.uniform(0.2, 1.0, count[channel])
        np.add.at(train[channel], where, size * rng.choice((-1.0, 1.0), count[channel]))
    return train


def _synthesize_rain(rng: np.random.Generator, length: int) -> Signal:
    hiss = _filter(_noise(rng, length), "bandpass", (600.0, 9000.0))
    drops = _filter(_impulses(rng, length, 45.0, heavy=False), "bandpass", (1500.0, 6000.0))
    return hiss * _drift(rng, length, 0.5, 0.75, 1.0) + 6.0 * drops


def _synthesize_sea(rng: np.random.Generator, length: int) -> Signal:
    seconds = np.arange(length) / SAMPLE_RATE
    period = rng.uniform(6.0, 9.0)
    phase = rng.uniform(0.0, 2 * math.pi) + np.array([[0.0], [0.6]])  # waves reach L, then R
    swell = (0.5 - 0.5 * np.cos(2 * math.pi * seconds / period + phase)) ** 2
    body = _filter(_noise(rng, length), "bandpass", (100.0, 1500.0)) * (0.2 + 0.8 * swell)
    foam = _filter(_noise(rng, length), "highpass", 2000.0) * swell**2
    return body + 0.5 * foam


def _synthesize_wind(rng: np.random.Generator, length: int) -> Signal:
    gusts = _drift(rng, length, 0.4, 0.15, 1.0)
    low = _filter(_noise(rng, length), "lowpass", 400.0)
    mid = _filter(_noise(rng, length), "bandpass", (400.0, 2000.0))
    whistle = _filter(_noise(rng, length), "bandpass", (650.0, 760.0))
    return (low + 0.5 * mid) * gusts + 1.5 * whistle * gusts**2


def _synthesize_city(rng: np.random.Generator, length: int) -> Signal:
    rumble = _filter(_noise(rng, length), "lowpass", 150.0)
    traffic = _filter(_noise(rng, length), "bandpass", (200.0, 2500.0))
    # Cars passing: loudest as each goes by, moving from one side to the other.
    seconds = _envelope_grid(length) / SAMPLE_RATE
    gains = np.zeros((2, len(seconds)))
    for _ in range(rng.poisson(length / SAMPLE_RATE / 3.0) + 1):
        centre = rng.uniform(0.0, length / SAMPLE_RATE)
        width = rng.uniform(0.8, 1.6)
        bump = np.exp(-0.5 * ((seconds - centre) / width) ** 2)
        side = np.clip((seconds - centre) / (2 * width), -1.0, 1.0) * rng.choice((-1.0, 1.0))
        angle = (side + 1.0) * math.pi / 4.0
        gains += np.stack((np.cos(angle), np.sin(angle))) * bump
    road = _filter(rng.standard_normal(length), "bandpass", (100.0, 1500.0))
    passing = _expand_envelope(gains, length) * road
    return 0.8 * rumble + traffic * _drift(rng, length, 0.3, 0.5, 1.0) + 1.5 * passing


def _synthesize_forest(rng: np.random.Generator, length: int) -> Signal:
    leaves = _filter(_noise(rng, length), "bandpass", (300.0, 3000.0))
    bed = 0.5 * leaves * _drift(rng, length, 0.3, 0.3, 1.0)
    birds = np.zeros((2, length))
    for _ in range(rng.poisson(length / SAMPLE_RATE * 0.8) + 1):
        start = rng.uniform(0.0, length / SAMPLE_RATE)
        pitch = rng.uniform(2500.0, 5000.0)
        sweep = rng.uniform(-1500.0, 1500.0)
        pan = rng.uniform(-0.8, 0.8)
        loudness = rng.uniform(0.3, 1.0)
        for note in range(int(rng.integers(2, 6))):
            # One chirp: a quick frequency sweep with a tremolo, under a smooth envelope.
            chirp_s = rng.uniform(0.04, 0.12)
            offset = round((start + note * rng.uniform(0.1, 0.18)) * SAMPLE_RATE)
            count = min(round(chirp_s * SAMPLE_RATE), length - offset)
            if count <= 0:
                break
            t = np.arange(count) / SAMPLE_RATE
            frequency = pitch + sweep * t / chirp_s + 300.0 * np.sin(2 * math.pi * 30.0 * t)
            tone = np.sin(2 * math.pi * np.cumsum(frequency) / SAMPLE_RATE)
            shape = np.sin(math.pi * t / chirp_s) ** 2
            birds[:, offset : offset + count] += to_stereo(loudness * tone * shape, pan=pan)
    return bed + 0.25 * birds


def _synthesize_fire(rng: np.random.Generator, length: int) -> Signal:
    roar = _filter(_noise(rng, length), "lowpass", 250.0) * _drift(rng, length, 2.0, 0.5, 1.0)
    flicker = _filter(_noise(rng, length), "bandpass", (300.0, 1500.0))
    crackle = _filter(_impulses(rng, length, 15.0, heavy=True), "highpass", 1500.0)
    pops = _filter(_impulses(rng, length, 1.5, heavy=True), "bandpass", (500.0, 3000.0))
    return roar + 0.3 * flicker * _drift(rng, length, 3.0, 0.2, 1.0) + 2.5 * (crackle + pops)


def _synthesize_room(rng: np.random.Generator, length: int) -> Signal:
    air = _filter(_noise(rng, length), "lowpass", 1200.0, order=1)
    return air + 2.0 * _filter(_noise(rng, length), "lowpass", 120.0)


_SYNTHS: dict[str, Callable[[np.random.Generator, int], Signal]] = {
    "rain": _synthesize_rain,
    "sea": _synthesize_sea,
    "wind": _synthesize_wind,
    "city": _synthesize_city,
    "forest": _synthesize_forest,
    "fire": _synthesize_fire,
    "room": _synthesize_room,
}
