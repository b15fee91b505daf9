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
from runbase.media.dsp import moving_average, sliding_max

from .ambience import synthesize_ambience
from .dialogue import DialogueLine, extract_dialogue, remove_dialogue
from .music import synthesize_music
from .speech import synthesize_speech

__all__ = ["Soundtrack", "SpokenLine", "compose_soundtrack"]

_TARGET_LUFS = -16.0
_PEAK_DBFS = -1.0

# Dialogue layout, in seconds.
_EDGE_S = 0.25  # kept free at the start and the end of the clip
_GAP_S = 0.3  # at least this between two lines
_MIN_LINE_S = 0.6  # a line given less time than this is not worth starting
_MAX_EXTRA_PAUSE_S = 1.0  # spare time spread between lines, at most this per pause
_FAST_RATE = 1.2  # how much faster a line may be spoken before words are cut
_SPEAKER_PAN = 0.2

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
    bed = _level(synthesize_ambience(ambience, _rng(seed, 1), length), _AMBIENCE_LUFS[ambience])
    mix = speech + bed * _duck_gain(activity, _AMBIENCE_DUCK_DB)
    if has_music:
        music = _level(synthesize_music(_rng(seed, 2), length), _MUSIC_LUFS)
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
