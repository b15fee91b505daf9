"""The music of a clip whose prompt asks for it: a pad and an arpeggio in a seeded key.

    synthesize_music(rng, length) -> (2, length) float64 at 48 kHz

Key, mode, tempo and the arpeggio's pattern are drawn from `rng`. The level is arbitrary;
the soundtrack sets it and ducks the music under the speech.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from runbase.media.audio import SAMPLE_RATE, to_stereo
from runbase.media.dsp import Filter

__all__ = ["synthesize_music"]

# Chords as semitones above the key's root: I-V-vi-IV in major, i-VI-III-VII in minor.
_PROGRESSIONS = (
    ((0, 4, 7), (7, 11, 14), (9, 12, 16), (5, 9, 12)),
    ((0, 3, 7), (8, 12, 15), (3, 7, 10), (10, 14, 17)),
)


def synthesize_music(rng: np.random.Generator, length: int) -> npt.NDArray[np.float64]:
    """A soft pad and a plucked arpeggio in a seeded key, mode and tempo."""
    root = int(rng.integers(48, 60))  # C3..B3 as MIDI notes
    progression = _PROGRESSIONS[int(rng.integers(0, 2))]
    beat_s = 60.0 / rng.uniform(72.0, 100.0)
    bar = round(4 * beat_s * SAMPLE_RATE)
    pattern = rng.permutation((0, 1, 2, 3))
    music = np.zeros((2, length))
    for bar_index, bar_start in enumerate(range(0, length, bar)):
        chord = progression[bar_index % len(progression)]
        count = min(bar + SAMPLE_RATE // 2, length - bar_start)  # pads overlap into the next bar
        t = np.arange(count, dtype=np.float32) / np.float32(SAMPLE_RATE)
        envelope = np.minimum(1.0, t / 0.4) * np.clip((count / SAMPLE_RATE - t) / 0.6, 0.0, 1.0)
        for semitone in (chord[0] - 12, *chord):
            frequency = _midi_to_hz(root + semitone)
            # Slightly different tuning left and right: a slow chorus that makes the pad wide.
            detune = np.array([[0.999], [1.001]], dtype=np.float32)
            music[:, bar_start : bar_start + count] += (
                0.12 * np.sin(np.float32(2 * math.pi * frequency) * detune * t) * envelope
            )
        eighth = bar // 8
        for step in range(8):
            offset = bar_start + step * eighth
            if offset >= length:
                break
            tones = (*chord, chord[0] + 12)
            frequency = _midi_to_hz(root + 12 + tones[int(pattern[step % 4])])
            count = min(2 * eighth, length - offset)
            t = np.arange(count, dtype=np.float32) / np.float32(SAMPLE_RATE)
            harmonics = np.array([[1.0], [2.0], [3.0]], dtype=np.float32)
            partials = np.sin(np.float32(2 * math.pi * frequency) * harmonics * t) / harmonics**1.5
            pluck = partials.sum(axis=0) * np.exp(-t / 0.25)
            music[:, offset : offset + count] += to_stereo(
                0.1 * pluck, pan=0.3 if step % 2 else -0.3
            )
    return Filter.butterworth(2, 6000.0, "lowpass", SAMPLE_RATE).apply(music)


def _midi_to_hz(note: int) -> float:
    return 440.0 * math.pow(2.0, (note - 69) / 12.0)
