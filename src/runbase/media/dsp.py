"""Filters and sliding windows for audio, in numpy alone.

    Filter              a digital IIR filter as zeros, poles and gain (zpk)
      .butterworth()    low-, high- or band-pass, designed as scipy.signal.butter designs it
      .biquad()         one second-order section from its b and a coefficients
      .then()           two filters in series
      .apply()          the filter run over a signal from rest, along its last axis
    sliding_min, sliding_max, moving_average
                        centred windows, as scipy.ndimage's *_filter1d compute them

Why not scipy: importing scipy.signal and scipy.ndimage costs the engine process about
75 MB and one to two seconds, for five functions. A filter is applied here in the frequency
domain: the signal is zero-padded until the filter's impulse response has died away (to
1e-13, from the slowest pole), so the circular convolution of the FFT is the linear one,
and the output equals a sample-by-sample run of the recursion from rest (scipy's `sosfilt`
without initial conditions) to within float rounding. That costs two FFTs per call, a few
milliseconds for seconds of audio.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import numpy.typing as npt

__all__ = ["Edge", "Filter", "Kind", "moving_average", "sliding_max", "sliding_min"]

Array = npt.NDArray[np.float64]
Kind = Literal["lowpass", "highpass", "bandpass"]
Edge = Literal["nearest", "reflect"]

_TAIL = 1e-13
"""Where an impulse response counts as died away, relative to its start."""
_MAX_TAIL = 1 << 22
"""Samples of padding at most: a pole very near the unit circle would need endless ones."""


@dataclass(frozen=True)
class Filter:
    """A causal digital filter H(z) = gain * prod(z - zeros) / prod(z - poles)."""

    zeros: npt.NDArray[np.complex128]
    poles: npt.NDArray[np.complex128]
    gain: float
    _responses: dict[int, npt.NDArray[np.complex128]] = field(
        default_factory=dict, compare=False, repr=False
    )
    """The response at the bins of an FFT of each size used so far (loudness meters reuse
    one filter on signals of one length)."""

    @classmethod
    def butterworth(
        cls, order: int, cutoff: float | tuple[float, float], kind: Kind, sample_rate: float
    ) -> Filter:
        """The Butterworth filter of `order` (a band-pass has twice as many poles), by the
        bilinear transform of the analog prototype with its edges pre-warped."""
        if order < 1:
            raise ValueError(f"order must be at least 1, got {order}")
        edges = (cutoff,) if isinstance(cutoff, int | float) else tuple(cutoff)
        wanted = 2 if kind == "bandpass" else 1
        if len(edges) != wanted:
            raise ValueError(f"a {kind} filter takes {wanted} cutoff(s), got {len(edges)}")
        if not all(0.0 < edge < sample_rate / 2 for edge in edges):
            raise ValueError(f"cutoffs must lie between 0 and {sample_rate / 2} Hz")
        # The analog prototype's poles: the left half of the unit circle, unit gain at 0.
        prototype = -np.exp(1j * np.pi * np.arange(-order + 1, order, 2) / (2 * order))
        warped = [2 * sample_rate * math.tan(math.pi * edge / sample_rate) for edge in edges]
        if kind == "lowpass":
            zeros, poles, gain = np.zeros(0, complex), warped[0] * prototype, warped[0] ** order
        elif kind == "highpass":
            zeros, poles, gain = np.zeros(order, complex), warped[0] / prototype, 1.0
        else:
            width, centre = warped[1] - warped[0], math.sqrt(warped[0] * warped[1])
            # s -> (s^2 + centre^2) / (s * width): each prototype pole becomes two.
            half = prototype * width / 2
            root = np.sqrt(half**2 - centre**2)
            zeros, poles, gain = (
                np.zeros(order, complex),
                np.concatenate([half + root, half - root]),
                width**order,
            )
        return cls._from_analog(zeros, poles, gain, sample_rate)

    @classmethod
    def biquad(cls, b: tuple[float, float, float], a: tuple[float, float, float]) -> Filter:
        """(b0 + b1/z + b2/z^2) / (a0 + a1/z + a2/z^2)."""
        b_coeffs, a_coeffs = np.asarray(b, float), np.asarray(a, float)
        zeros = np.roots(b_coeffs).astype(complex) if b_coeffs[0] else np.zeros(0, complex)
        return cls(zeros, np.roots(a_coeffs).astype(complex), float(b_coeffs[0] / a_coeffs[0]))

    @classmethod
    def _from_analog(
        cls,
        zeros: npt.NDArray[np.complex128],
        poles: npt.NDArray[np.complex128],
        gain: float,
        sample_rate: float,
    ) -> Filter:
        """The bilinear transform s = 2 fs (z - 1) / (z + 1); zeros at infinity go to z = -1."""
        twice = 2 * sample_rate
        digital_zeros = np.concatenate(
            [(twice + zeros) / (twice - zeros), -np.ones(len(poles) - len(zeros))]
        )
        digital_poles = (twice + poles) / (twice - poles)
        scale = np.prod(twice - zeros) / np.prod(twice - poles)
        return cls(digital_zeros, digital_poles, float(gain * scale.real))

    def then(self, other: Filter) -> Filter:
        """This filter followed by `other`."""
        return Filter(
            np.concatenate([self.zeros, other.zeros]),
            np.concatenate([self.poles, other.poles]),
            self.gain * other.gain,
        )

    def response(self, omega: Array) -> npt.NDArray[np.complex128]:
        """H(e^(j omega)) at angular frequencies `omega` (radians per sample)."""
        z = np.exp(1j * omega)
        result = np.full(len(omega), complex(self.gain))
        for zero in self.zeros:  # one factor at a time: no (frequencies x roots) array
            result *= z - zero
        for pole in self.poles:
            result /= z - pole
        return result

    def apply(self, signal: npt.NDArray[np.floating]) -> Array:
        """The filter run over `signal` along its last axis, from rest."""
        samples = np.asarray(signal, dtype=np.float64)
        length = samples.shape[-1]
        if length == 0:
            return samples.copy()
        size = _fft_size(length + self._tail_length())
        response = self._responses.get(size)
        if response is None:
            if len(self._responses) >= 8:
                self._responses.clear()
            response = self.response(2 * np.pi * np.arange(size // 2 + 1) / size)
            self._responses[size] = response
        spectrum = np.fft.rfft(samples, n=size, axis=-1) * response
        return np.fft.irfft(spectrum, n=size, axis=-1)[..., :length]

    def _tail_length(self) -> int:
        radius = float(np.max(np.abs(self.poles), initial=0.0))
        if radius <= 0.0:
            return len(self.zeros) + 1  # finite: it ends with its last zero
        if radius >= 1.0:
            raise ValueError("the filter is unstable (a pole on or outside the unit circle)")
        tail = math.ceil(math.log(_TAIL) / math.log(radius)) + len(self.poles)
        return min(tail, _MAX_TAIL)


def _fft_size(minimum: int) -> int:
    """The smallest 2^a 3^b 5^c at least `minimum`: the sizes FFTs are fastest at."""
    best = 1 << (minimum - 1).bit_length()
    five = 1
    while five < best:
        three = five
        while three < best:
            candidate = three
            while candidate < minimum:
                candidate <<= 1
            best = min(best, candidate)
            three *= 3
        five *= 5
    return best


def _padded(values: npt.NDArray[np.floating], size: int, edge: Edge) -> Array:
    """`values` widened so that a centred window of `size` fits around every sample."""
    before = size // 2
    after = size - 1 - before
    array = np.asarray(values, dtype=np.float64)
    if edge == "nearest":
        return np.pad(array, (before, after), mode="edge")
    return np.pad(array, (before, after), mode="symmetric")  # scipy's reflect repeats the edge


def sliding_min(values: npt.NDArray[np.floating], size: int, edge: Edge = "reflect") -> Array:
    """The minimum over a centred window of `size` samples around each sample (1-D).

    Van Herk's method: two running minima over blocks of `size`, so the cost does not grow
    with the window.
    """
    if size < 1:
        raise ValueError(f"size must be at least 1, got {size}")
    length = len(values)
    if length == 0 or size == 1:
        return np.asarray(values, dtype=np.float64).copy()
    padded = _padded(values, size, edge)
    blocks = -(-len(padded) // size)
    full = np.full(blocks * size, np.inf)
    full[: len(padded)] = padded
    grid = full.reshape(blocks, size)
    from_start = np.minimum.accumulate(grid, axis=1).ravel()
    from_end = np.minimum.accumulate(grid[:, ::-1], axis=1)[:, ::-1].ravel()
    # The window [i, i + size - 1] spans at most two blocks: the rest of the first one
    # (from_end[i]) and the start of the next (from_start[i + size - 1]).
    return np.minimum(from_end[:length], from_start[size - 1 : size - 1 + length])


def sliding_max(values: npt.NDArray[np.floating], size: int, edge: Edge = "reflect") -> Array:
    """The maximum over a centred window of `size` samples around each sample (1-D)."""
    return -sliding_min(-np.asarray(values, dtype=np.float64), size, edge)


def moving_average(values: npt.NDArray[np.floating], size: int, edge: Edge = "reflect") -> Array:
    """The mean over a centred window of `size` samples around each sample (1-D)."""
    if size < 1:
        raise ValueError(f"size must be at least 1, got {size}")
    length = len(values)
    if length == 0:
        return np.asarray(values, dtype=np.float64).copy()
    sums = np.concatenate([[0.0], np.cumsum(_padded(values, size, edge))])
    averages: Array = (sums[size : size + length] - sums[:length]) / size
    return averages
