"""The preview engine's dialogue: extraction, language detection and espeak-ng speech."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from runbase.engines.preview.dialogue import DialogueLine, extract_dialogue, remove_dialogue
from runbase.engines.preview.languages import detect_language
from runbase.engines.preview.speech import synthesize_speech, voice_for_language
from runbase.errors import GenerationFailed

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="espeak-ng is not installed"
)


def seconds(samples: np.ndarray, rate: int = 48_000) -> float:
    return len(samples) / rate


# --- extract_dialogue ---------------------------------------------------------------------


def test_extract_dialogue_reads_all_four_quote_styles_in_order() -> None:
    prompt = (
        'A man says "Where are you going?" and she answers “To the station.” '
        "The child whispers 「ありがとう」 and the old man says 『你好，朋友』."
    )

    lines = extract_dialogue(prompt)

    assert [line.text for line in lines] == [
        "Where are you going?",
        "To the station.",
        "ありがとう",
        "你好，朋友",
    ]


def test_extract_dialogue_gives_each_line_its_own_language() -> None:
    prompt = (
        'She says "I will wait for you here." He replies "¿Dónde está mi hermano?" '
        "「東京へ行きます」 then “我们走吧！” and “안녕하세요, 반갑습니다” and "
        '"Saya tidak tahu apa yang terjadi."'
    )

    lines = extract_dialogue(prompt)

    assert lines == [
        DialogueLine("I will wait for you here.", "en"),
        DialogueLine("¿Dónde está mi hermano?", "es"),
        DialogueLine("東京へ行きます", "ja"),
        DialogueLine("我们走吧！", "zh"),
        DialogueLine("안녕하세요, 반갑습니다", "ko"),
        DialogueLine("Saya tidak tahu apa yang terjadi.", "id"),
    ]


@pytest.mark.parametrize(
    ("prompt", "texts"),
    [
        ("「彼は『行こう』と言った」", ["彼は『行こう』と言った"]),
        ('“He said "stop" twice”', ['He said "stop" twice']),
        ('"He said “stop to me"', ["He said “stop to me"]),
        ('She types "Hello” with mixed quotes', ["Hello"]),
        ('an "unclosed quote, then “Bye” at the end', ["Bye"]),
        ("stray ” and 」 closers, then 「はい」", ["はい"]),
        ("「unclosed corner 『inner』 rest", ["inner"]),
        ('"" and "  " and "..." and " spaced   out "', ["spaced out"]),
        ("no dialogue at all", []),
    ],
)
def test_extract_dialogue_handles_nesting_and_unbalanced_quotes(
    prompt: str, texts: list[str]
) -> None:
    assert [line.text for line in extract_dialogue(prompt)] == texts


@pytest.mark.parametrize("pattern", ["“", "「", '“"', "「“", "x“", "「「」"])
def test_extract_dialogue_is_fast_on_a_prompt_full_of_quote_marks(pattern: str) -> None:
    prompt = (pattern * 2000)[:2000]  # the longest prompt the API accepts

    started = time.perf_counter()
    extract_dialogue(prompt)

    assert time.perf_counter() - started < 0.5


def test_remove_dialogue_keeps_only_the_narration() -> None:
    narration = remove_dialogue('In the rain he says "Look at the sea" and 「行こう」 leaves.')

    assert "sea" not in narration and "行こう" not in narration
    assert narration.split() == ["In", "the", "rain", "he", "says", "and", "leaves."]


# --- detect_language ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("Where are you going tonight?", "en"),
        ("It's beautiful, isn't it?", "en"),
        ("Run!", "en"),
        ("你好，我们走吧！", "zh"),
        ("今天天气很好", "zh"),
        ("東京の夜景はとても綺麗です", "ja"),
        ("ありがとう", "ja"),
        ("コーヒーをください", "ja"),
        ("안녕하세요", "ko"),
        ("¿Dónde estás?", "es"),
        ("Hola, amigo", "es"),
        ("Vamos a la playa mañana", "es"),
        ("Apa kabar?", "id"),
        ("Saya tidak tahu apa yang terjadi.", "id"),
        ("Terima kasih banyak", "id"),
        ("Je ne sais pas", "fr"),
        ("Ich weiß es nicht", "de"),
        ("Eu não sei o que fazer", "pt"),
        ("Привет, как дела?", "ru"),
        ("สวัสดีครับ", "th"),
        ("مرحبا بك", "ar"),
        ("नमस्ते", "hi"),
        ("Xin chào, bạn khỏe không?", "vi"),
        ("12345 !!!", "en"),
        ("", "en"),
    ],
)
def test_detect_language(text: str, language: str) -> None:
    assert detect_language(text) == language


@pytest.mark.parametrize(
    ("language", "voice"),
    [
        ("en", "en-us"),
        ("zh", "cmn-latn-pinyin"),
        ("zh-CN", "cmn-latn-pinyin"),
        ("ja", "ja"),
        ("pt-BR", "pt-br"),
        ("xx", "en-us"),
    ],
)
def test_voice_for_language_maps_codes_and_falls_back_to_english(language: str, voice: str) -> None:
    assert voice_for_language(language) == voice


# --- synthesize_speech --------------------------------------------------------------------


@needs_espeak
@pytest.mark.parametrize(
    ("text", "language"),
    [
        ("Where are you going tonight?", "en"),
        ("你好，我们走吧！", "zh"),
        ("東京の夜景はとても綺麗ですね", "ja"),
        ("안녕하세요, 만나서 반갑습니다", "ko"),
        ("¿Dónde estás, amigo?", "es"),
        ("Saya tidak tahu apa yang terjadi.", "id"),
    ],
)
def test_synthesize_speech_speaks_each_language(text: str, language: str) -> None:
    samples = synthesize_speech(text, language)

    assert samples.dtype == np.float32 and samples.ndim == 1
    assert 0.4 < seconds(samples) < 6.0
    assert float(np.sqrt(np.mean(samples**2))) > 0.02
    assert float(np.max(np.abs(samples))) <= 1.0


def _espeak_seconds(text: str, voice: str, home: Path) -> float:
    """What espeak-ng itself makes of `text` with `voice` (22,050 Hz, 16-bit WAV)."""
    completed = subprocess.run(
        ["espeak-ng", "-v", voice, "-z", "--stdout"],
        input=text.encode(),
        capture_output=True,
        env={"HOME": str(home), "TMPDIR": str(home), "PATH": os.environ["PATH"]},
        check=True,
    )
    data = completed.stdout
    payload = data[data.index(b"data") + 8 :]
    pcm = np.frombuffer(payload[: len(payload) // 2 * 2], dtype="<i2")
    loud = np.flatnonzero(np.abs(pcm) > 0.01 * 32768)
    return (loud[-1] - loud[0]) / 22_050


@needs_espeak
def test_mandarin_tone_digits_are_tones_not_spoken_numbers(tmp_path: Path) -> None:
    # espeak-ng's `cmn` voice reads "wo3" as "wo three", which makes a line about 1.6 times
    # as long as the same syllables without digits. synthesize_speech must read the digits
    # as tones: its line must be about as long as the syllables alone.
    hanzi = "我们今天去公园散步"
    toneless = "wo men jin tian qu gong yuan san bu"
    with_digits = "wo3 men5 jin1 tian1 qu4 gong1 yuan2 san4 bu4"

    ours = seconds(synthesize_speech(hanzi, "zh")) / seconds(synthesize_speech(toneless, "zh"))
    spoken_digits = _espeak_seconds(with_digits, "cmn", tmp_path) / _espeak_seconds(
        toneless, "cmn", tmp_path
    )

    assert spoken_digits > 1.4  # the check can tell digits read aloud from tones
    assert 0.8 < ours < 1.2


@needs_espeak
def test_japanese_kanji_are_read_not_named() -> None:
    # Without kana conversion espeak-ng says "Chinese letter" for every kanji: far longer
    # than the word itself.
    kanji = seconds(synthesize_speech("東京", "ja"))
    kana = seconds(synthesize_speech("とうきょう", "ja"))

    assert abs(kanji - kana) < 0.2 * kana


@needs_espeak
def test_synthesize_speech_is_deterministic_and_variants_differ() -> None:
    first = synthesize_speech("We need to leave now.", "en", voice_variant=0)
    again = synthesize_speech("We need to leave now.", "en", voice_variant=0)
    other = synthesize_speech("We need to leave now.", "en", voice_variant=1)

    assert np.array_equal(first, again)
    assert first.shape != other.shape or not np.array_equal(first, other)


@needs_espeak
def test_synthesize_speech_honours_sample_rate_and_rate() -> None:
    at_48k = synthesize_speech("Hello there, my friend.", "en")
    at_24k = synthesize_speech("Hello there, my friend.", "en", sample_rate=24_000)
    faster = synthesize_speech("Hello there, my friend.", "en", rate=1.5)

    assert abs(len(at_48k) - 2 * len(at_24k)) <= 2
    assert len(faster) < 0.85 * len(at_48k)


def test_synthesize_speech_of_nothing_is_empty() -> None:
    assert synthesize_speech(" ... ", "en").shape == (0,)


def test_missing_espeak_raises_generation_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))

    with pytest.raises(GenerationFailed, match="apt-get install espeak-ng"):
        synthesize_speech("Hello", "en")


def test_failing_espeak_raises_generation_failed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broken = tmp_path / "espeak-ng"
    broken.write_text("#!/bin/sh\necho 'voice data missing' >&2\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))

    with pytest.raises(GenerationFailed, match="voice data missing"):
        synthesize_speech("Hello", "en")
