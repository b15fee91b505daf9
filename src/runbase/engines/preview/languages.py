"""Which language a short line of dialogue is in: `detect_language`, by script and words."""

from __future__ import annotations

import functools
import re
import unicodedata
from collections import Counter

__all__ = ["detect_language"]


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
