"""The preview engine's soundtrack: the prompt's dialogue over an ambience bed and music.

The preview engine is an animatic, not a model, but its audio is meant to be useful: every
quoted line is really spoken, in its own language, at a place the subtitles can show, over
a procedurally synthesized ambience the prompt asks for (rain, sea, wind, city, forest,
fire, or a room's quiet tone) and, when the prompt mentions music, a simple pad and
arpeggio in a seeded key that ducks under the speech.

    compose_soundtrack(prompt, duration=..., seed=...) -> Soundtrack

Everything is deterministic: espeak-ng's output depends only on its input, and every random
choice comes from generators seeded with `seed` (one per component, so adding a component
never changes the others). The final mix is loudness-normalized to -16 LUFS with sample
peaks at most -1 dBFS.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from runbase.media.audio import (
    SAMPLE_RATE,
    apply_fades,
    db_to_gain,
    measure_loudness,
    normalize_loudness,
    to_stereo,
)
from runbase.media.dsp import Filter, Kind, moving_average, sliding_max
from runbase.media.speech import (
    DialogueLine,
    extract_dialogue,
    remove_dialogue,
    synthesize_speech,
)

__all__ = ["Soundtrack", "SpokenLine", "compose_soundtrack"]

Signal = npt.NDArray[np.float64]

_TARGET_LUFS = -16.0
_PEAK_DBFS = -1.0

# Dialogue layout, in seconds.
_EDGE_S = 0.25  # kept free at the start and the end of the clip
_GAP_S = 0.3  # at least this between two lines
_MIN_LINE_S = 0.6  # a line given less time than this is not worth starting
_MAX_EXTRA_PAUSE_S = 1.0  # spare time spread between lines, at most this per pause
_FAST_RATE = 1.2  # how much faster a line may be spoken before words are cut
_SPEAKER_PAN = 0.2
_ENVELOPE_STEP = SAMPLE_RATE // 200  # slow gain curves are computed every 5 ms

# Stem loudness before the final normalization: speech leads, the bed sits well below.
_SPEECH_LUFS = -20.0
_MUSIC_LUFS = -28.0
_MUSIC_DUCK_DB = -10.0
_AMBIENCE_DUCK_DB = -4.0
_AMBIENCE_LUFS = {
    "rain": -30.0,
    "sea": -29.0,
    "wind": -31.0,
    "city": -31.0,
    "forest": -32.0,
    "fire": -31.0,
    "room": -40.0,
}

# Checked in this order: the first that matches the narration (then the dialogue) wins, so
# "a rainy city street" sounds of rain, and "a campfire on the beach" of fire.
_AMBIENCE_WORDS = (
    ("rain", r"\b(rain(?!forest)\w*|drizzl\w*|downpour\w*|thunderstorm\w*|monsoon)\b|雨"),
    (
        "fire",
        r"\b(fires?|campfires?|fireplaces?|bonfires?|fireside|flames?|hearth)\b|篝火|炉火|火焰",
    ),
    (
        "sea",
        r"\b(seas?|seaside|ocean\w*|waves?|beach\w*|shores?|surf\w*|coast\w*|harbou?r)\b"
        r"|大海|海边|海浪|海滩|海洋|浪花",
    ),
    ("forest", r"\b(forests?|woods|woodland|birds?|birdsong|jungles?|rainforests?)\b|森林|树林|鸟"),
    (
        "wind",
        r"\b(wind|winds|windy|storm\w*|gales?|gusts?|blizzard|deserts?|breeze)\b"
        r"|大风|狂风|风声|刮风|沙漠",
    ),
    (
        "city",
        r"\b(city|cities|streets?|traffic|downtown|urban|cars?|crowds?|subway)\b|城市|街|马路",
    ),
)
# Singing birds are ambience, not music: hence the look-behinds.
_MUSIC_WORDS = re.compile(
    r"\b(music\w*|songs?|(?<!bird )(?<!birds )(sings?|singing)|singer|soundtrack|piano|"
    r"guitars?|melod\w*|beats?|drums?|violin|orchestra\w*|jazz|concert|lullaby|dance|"
    r"dancing)\b|音乐|歌|钢琴|吉他",
)
_NO_MUSIC = re.compile(r"\b(no|without)\s+(background\s+)?(music|soundtrack|songs?)\b")


@dataclass(frozen=True)
class SpokenLine:
    """Where one dialogue line is spoken, in seconds from the start of the clip."""

    text: str
    language: str
    start: float
    end: float


@dataclass(frozen=True, eq=False)
class Soundtrack:
    """A clip's audio, and what it contains.

    `samples` is float32 `(2, n)` at 48 kHz with `n == round(duration * 48000)`; `notes`
    tells the user what was changed to fit (a shortened or dropped line).
    """

    samples: npt.NDArray[np.float32]
    lines: tuple[SpokenLine, ...]
    ambience: str
    has_music: bool
    notes: tuple[str, ...]


def compose_soundtrack(prompt: str, *, duration: float, seed: int) -> Soundtrack:
    """Compose the soundtrack of a `duration`-second clip for `prompt`.

    Raises `runbase.errors.GenerationFailed` if speech synthesis fails (no espeak-ng).
    """
    length = round(duration * SAMPLE_RATE)
    if not math.isfinite(duration) or length <= 0:
        raise ValueError(f"duration must be positive, got {duration}")
    notes: list[str] = []
    speech, lines = _compose_dialogue(extract_dialogue(prompt), duration, length, seed, notes)
    narration = remove_dialogue(prompt).lower()
    ambience = _choose_ambience(narration) or _choose_ambience(prompt.lower()) or "room"
    has_music = bool(_MUSIC_WORDS.search(narration)) and not _NO_MUSIC.search(narration)

    activity = _measure_speech_activity(speech)
    bed = _level(_AMBIENCE_SYNTHS[ambience](_rng(seed, 1), length), _AMBIENCE_LUFS[ambience])
    mix = speech + bed * _duck_gain(activity, _AMBIENCE_DUCK_DB)
    if has_music:
        music = _level(_synthesize_music(_rng(seed, 2), length), _MUSIC_LUFS)
        music = apply_fades(music, SAMPLE_RATE, fade_in=0.5, fade_out=1.0)
        mix += music * _duck_gain(activity, _MUSIC_DUCK_DB)
    mix = apply_fades(mix, SAMPLE_RATE, fade_in=0.02, fade_out=0.05)
    samples = normalize_loudness(mix, SAMPLE_RATE, target_lufs=_TARGET_LUFS, peak_dbfs=_PEAK_DBFS)
    return Soundtrack(samples, tuple(lines), ambience, has_music, tuple(notes))


def _rng(seed: int, component: int) -> np.random.Generator:
    return np.random.default_rng([seed & 0xFFFF_FFFF_FFFF_FFFF, component])


# --- dialogue ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Take:
    """One synthesized line: what is said, as what voice, and the samples."""

    number: int  # 1-based, as the user counts the prompt's lines
    line: DialogueLine
    text: str
    voice: int
    samples: npt.NDArray[np.float32]

    @property
    def seconds(self) -> float:
        return len(self.samples) / SAMPLE_RATE


def _compose_dialogue(
    lines: list[DialogueLine], duration: float, length: int, seed: int, notes: list[str]
) -> tuple[npt.NDArray[np.float32], list[SpokenLine]]:
    """The speech stem `(2, length)` and where each line sits in it."""
    clip = f"{duration:g} s clip"
    usable = duration - 2 * _EDGE_S
    room_for = max(0, math.floor((usable + _GAP_S) / (_MIN_LINE_S + _GAP_S)))
    if len(lines) == room_for + 1:
        notes.append(f'line {len(lines)} dropped: no room left in the {clip}: "{lines[-1].text}"')
    elif len(lines) > room_for:
        notes.append(f"lines {room_for + 1} to {len(lines)} dropped: no room left in the {clip}")
    # Alternate speakers between a male and a female voice; the seed picks which is first
    # and which variants.
    pair = _rng(seed, 0).permutation(((0, 1), (1, 0), (2, 3), (3, 2)))[0]
    takes = []
    for number, line in enumerate(lines[:room_for], start=1):
        text = _cap_text(line, usable)
        take = _speak(number, line, text, int(pair[(number - 1) % 2]), 1.0)
        if take.samples.size:  # a line of symbols only says nothing
            takes.append(take)
    takes = _fit_takes(takes, usable, clip, notes)

    speech = np.zeros((2, length), dtype=np.float32)
    spoken: list[SpokenLine] = []
    slack = usable - sum(take.seconds for take in takes) - _GAP_S * max(0, len(takes) - 1)
    pause = min(_MAX_EXTRA_PAUSE_S, max(0.0, slack) / (len(takes) + 1))
    cursor = _EDGE_S + pause
    for take in takes:
        start = min(round(cursor * SAMPLE_RATE), length)
        stop = min(start + len(take.samples), length)
        pan = -_SPEAKER_PAN if take.voice % 2 == 0 else _SPEAKER_PAN
        # Each line at the same loudness, whichever voice and language speaks it.
        voice = _level(take.samples, _SPEECH_LUFS)
        speech[:, start:stop] = to_stereo(voice[: stop - start], pan=pan)
        spoken.append(
            SpokenLine(take.text, take.line.language, start / SAMPLE_RATE, stop / SAMPLE_RATE)
        )
        cursor = stop / SAMPLE_RATE + _GAP_S + pause
    return speech, spoken


def _cap_text(line: DialogueLine, seconds: float) -> str:
    """The line, or as much of it as anyone could say in `seconds` (cut at a boundary).

    Synthesizing all of a 2,000-character line only to throw most of it away would take
    seconds; no voice says more than 30 characters a second (15 without spaces).
    """
    per_second = 15 if line.language in _UNSPACED_LANGUAGES else 30
    limit = math.ceil(seconds * per_second)
    if len(line.text) <= limit:
        return line.text
    cut = line.text.rfind(" ", 0, limit + 1)
    if cut <= 0 or line.language in _UNSPACED_LANGUAGES:
        cut = limit
    return line.text[:cut]


def _speak(number: int, line: DialogueLine, text: str, voice: int, rate: float) -> _Take:
    samples = synthesize_speech(text, line.language, voice_variant=voice, rate=rate)
    return _Take(number, line, text, voice, samples)


def _fit_takes(takes: list[_Take], usable: float, clip: str, notes: list[str]) -> list[_Take]:
    """Make the takes fit: speak faster, then cut lines at word boundaries, or drop them."""
    budget = usable - _GAP_S * max(0, len(takes) - 1)
    whole = all(take.text == take.line.text for take in takes)  # see `_cap_text`
    if whole and sum(take.seconds for take in takes) <= budget:
        return takes
    takes = [_speak(t.number, t.line, t.text, t.voice, _FAST_RATE) for t in takes]
    fitted = []
    for position, take in enumerate(takes):
        # Shared fairly among this line and the ones after it, so that the time a shortened
        # or dropped line leaves unused goes to the next lines.
        share = _share_time([later.seconds for later in takes[position:]], budget)[0]
        if take.seconds <= share and take.text == take.line.text:
            fitted.append(take)
            budget -= take.seconds
            continue
        shortened = _shorten_take(take, share)
        if shortened is None:
            notes.append(f'line {take.number} dropped: too long for the {clip}: "{take.text}"')
        else:
            notes.append(f'line {take.number} shortened to fit the {clip}: "{shortened.text}"')
            fitted.append(shortened)
            budget -= shortened.seconds
    return fitted


def _share_time(lengths: list[float], budget: float) -> list[float]:
    """Split `budget` seconds max-min fairly: short lines keep their length, long ones share."""
    shares = list(lengths)
    pending = sorted(range(len(lengths)), key=lambda index: lengths[index])
    remaining = budget
    while pending:
        fair = remaining / len(pending)
        if lengths[pending[0]] > fair:
            for index in pending:
                shares[index] = fair
            break
        remaining -= lengths[pending.pop(0)]
    return shares


_CLAUSE_END = re.compile(r"[,.;:!?，。、；：！？…]$")
_TRAILING = " ,.;:!?-—，。、；：！？…"
_UNSPACED_LANGUAGES = frozenset({"zh", "ja", "th"})


def _shorten_take(take: _Take, seconds: float) -> _Take | None:
    """The longest start of the line, cut at a word boundary, that is spoken in `seconds`.

    Languages written without spaces (Chinese, Japanese, Thai) are cut between characters.
    A cut just after punctuation is preferred when it keeps at least half of the words.
    Returns None when not even the first word fits.
    """
    text = take.text
    if take.line.language in _UNSPACED_LANGUAGES or " " not in text:
        cuts = list(range(1, len(text)))
    else:
        cuts = [match.start() for match in re.finditer(r"\s+", text)]
    candidates = [
        (text[:cut].rstrip(_TRAILING), bool(_CLAUSE_END.search(text[:cut].rstrip())))
        for cut in cuts
    ]
    candidates = [(prefix, clause) for prefix, clause in candidates if _has_word(prefix)]

    def attempt(prefix: str) -> _Take | None:
        candidate = _speak(take.number, take.line, prefix, take.voice, _FAST_RATE)
        if not 0 < candidate.seconds <= seconds:
            return None
        return _Take(candidate.number, candidate.line, prefix + "…", take.voice, candidate.samples)

    # Speech grows with the text, so a binary search finds the longest prefix that fits.
    best: _Take | None = None
    best_index = -1
    low, high = 0, len(candidates) - 1
    while low <= high:
        middle = (low + high) // 2
        candidate = attempt(candidates[middle][0])
        if candidate is None:
            high = middle - 1
        else:
            best, best_index, low = candidate, middle, middle + 1
    if best is not None and not candidates[best_index][1]:
        clause = next(
            (i for i in range(best_index - 1, best_index // 2, -1) if candidates[i][1]), None
        )
        if clause is not None:
            return attempt(candidates[clause][0]) or best
    return best


def _has_word(text: str) -> bool:
    return any(char.isalnum() for char in text)


# --- mixing -----------------------------------------------------------------------------------


def _level(samples: npt.NDArray[np.floating], lufs: float) -> npt.NDArray[np.float32]:
    """Scale a stem to the given loudness (a plain gain: the final mix limits the peaks)."""
    loudness = measure_loudness(samples, SAMPLE_RATE)
    gain = db_to_gain(lufs - loudness) if math.isfinite(loudness) else 0.0
    return (samples * gain).astype(np.float32)


def _measure_speech_activity(speech: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """A 0..1 curve per sample: 1 while someone speaks, easing in and out over ~150 ms."""
    frame = SAMPLE_RATE // 100
    length = speech.shape[-1]
    count = -(-length // frame)
    padded = np.zeros(count * frame, dtype=np.float32)
    padded[:length] = np.abs(speech).max(axis=0)
    active = (padded.reshape(count, frame).max(axis=1) > 1e-3).astype(np.float32)
    held = sliding_max(active, 31)  # hold 150 ms either side of speech
    smooth = moving_average(held, 15)
    return np.repeat(smooth, frame)[:length].astype(np.float32)


def _duck_gain(activity: npt.NDArray[np.float32], depth_db: float) -> npt.NDArray[np.float32]:
    return (1.0 - (1.0 - db_to_gain(depth_db)) * activity).astype(np.float32)


def _choose_ambience(text: str) -> str | None:
    for ambience, pattern in _AMBIENCE_WORDS:
        if re.search(pattern, text):
            return ambience
    return None


# --- ambience ---------------------------------------------------------------------------------


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


_AMBIENCE_SYNTHS: dict[str, Callable[[np.random.Generator, int], Signal]] = {
    "rain": _synthesize_rain,
    "sea": _synthesize_sea,
    "wind": _synthesize_wind,
    "city": _synthesize_city,
    "forest": _synthesize_forest,
    "fire": _synthesize_fire,
    "room": _synthesize_room,
}


# --- music ------------------------------------------------------------------------------------

# Chords as semitones above the key's root: I-V-vi-IV in major, i-VI-III-VII in minor.
_PROGRESSIONS = (
    ((0, 4, 7), (7, 11, 14), (9, 12, 16), (5, 9, 12)),
    ((0, 3, 7), (8, 12, 15), (3, 7, 10), (10, 14, 17)),
)


def _synthesize_music(rng: np.random.Generator, length: int) -> Signal:
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
    return _filter(music, "lowpass", 6000.0)


def _midi_to_hz(note: int) -> float:
    return 440.0 * math.pow(2.0, (note - 69) / 12.0)
