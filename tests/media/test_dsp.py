"""runbase's own filters and sliding windows, checked against scipy's (the reference they
replace in the engine process)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.ndimage import maximum_filter1d, minimum_filter1d, uniform_filter1d
from scipy.signal import butter, lfilter, sosfilt

from runbase.media.dsp import Filter, moving_average, sliding_max, sliding_min

RATE = 48_000
CASES = [
    (1, 1200.0, "lowpass"),
    (2, 120.0, "lowpass"),
    (2, 6000.0, "lowpass"),
    (3, 900.0, "lowpass"),
    (2, 2000.0, "highpass"),
    (3, 40.0, "highpass"),
    (2, (650.0, 760.0), "bandpass"),
    (2, (100.0, 1500.0), "bandpass"),
    (1, (600.0, 9000.0), "bandpass"),
]


@pytest.mark.parametrize(("order", "cutoff", "kind"), CASES)
def test_butterworth_filters_equal_scipys_from_rest(
    order: int, cutoff: float | tuple[float, float], kind: str
) -> None:
    noise = np.random.default_rng(order).standard_normal((2, 3 * RATE + 17))
    sos = butter(order, cutoff, btype=kind, fs=RATE, output="sos")

    ours = Filter.butterworth(order, cutoff, kind, RATE).apply(noise)  # type: ignore[arg-type]

    assert ours.shape == noise.shape
    assert np.allclose(ours, sosfilt(sos, noise, axis=-1), rtol=0, atol=1e-10)


def test_biquads_in_series_equal_the_recursion() -> None:
    signal = np.random.default_rng(0).standard_normal(RATE)
    first = ((0.2, 0.4, 0.2), (1.0, -0.5, 0.3))
    second = ((1.0, -2.0, 1.0), (1.0, -1.99, 0.9901))

    ours = Filter.biquad(*first).then(Filter.biquad(*second)).apply(signal)

    expected = lfilter(second[0], second[1], lfilter(first[0], first[1], signal))
    assert np.allclose(ours, expected, rtol=0, atol=1e-10)


def test_a_filter_keeps_mono_shape_and_empty_signals() -> None:
    low = Filter.butterworth(2, 500.0, "lowpass", RATE)

    assert low.apply(np.ones(100)).shape == (100,)
    assert low.apply(np.zeros((2, 0))).shape == (2, 0)


def test_bad_filter_designs_are_refused() -> None:
    with pytest.raises(ValueError, match="cutoff"):
        Filter.butterworth(2, 30_000.0, "lowpass", RATE)
    with pytest.raises(ValueError, match="2 cutoff"):
        Filter.butterworth(2, 500.0, "bandpass", RATE)
    with pytest.raises(ValueError, match="order"):
        Filter.butterworth(0, 500.0, "lowpass", RATE)
    with pytest.raises(ValueError, match="unstable"):
        Filter.biquad((1.0, 0.0, 0.0), (1.0, 0.0, -1.5)).apply(np.ones(10))


@pytest.mark.parametrize("edge", ["nearest", "reflect"])
@pytest.mark.parametrize(("length", "size"), [(1000, 31), (1000, 15), (1000, 2), (5, 31), (9, 1)])
def test_sliding_windows_equal_scipy_ndimage(edge: str, length: int, size: int) -> None:
    values = np.random.default_rng(size).random(length)

    assert np.array_equal(
        sliding_min(values, size, edge),
        minimum_filter1d(values, size, mode=edge),  # type: ignore[arg-type]
    )
    assert np.array_equal(
        sliding_max(values, size, edge),
        maximum_filter1d(values, size, mode=edge),  # type: ignore[arg-type]
    )
    assert np.allclose(
        moving_average(values, size, edge),  # type: ignore[arg-type]
        uniform_filter1d(values, size, mode=edge),
        rtol=0,
        atol=1e-12,
    )
