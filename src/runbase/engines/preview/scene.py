"""What the preview engine draws: a prompt read for its scene, light, colours and camera.

The preview engine has no model, so it reads the prompt the way a storyboard artist would
skim it: which place (sky, sea, city, forest, interior, or abstract shapes when nothing
matches), what time of day, which colours, and how the camera moves. Everything is a
keyword match (English, plus a few Chinese and Japanese words), so the result is easy to
predict and to test. The seed only varies the details (layout, small hue shifts), never the
reading itself, and the same (prompt, seed) always gives the same `Scene`.
"""

from __future__ import annotations

import colorsys
import functools
import hashlib
import re
from dataclasses import dataclass
from typing import Final

__all__ = ["CAMERA_MOVES", "SCENE_KINDS", "Palette", "Scene", "describe_scene"]

RGB = tuple[int, int, int]

SCENE_KINDS: Final = ("sky", "sea", "city", "forest", "interior", "abstract")
CAMERA_MOVES: Final = (
    "static",
    "pan_left",
    "pan_right",
    "tilt_up",
    "tilt_down",
    "zoom_in",
    "zoom_out",
    "dolly_in",
    "dolly_out",
    "orbit",
)
DEFAULT_CAMERA: Final = "zoom_in"
"""A slow push-in: what a storyboard does when the prompt names no move."""


@dataclass(frozen=True)
class Palette:
    """The colours of one scene; every layer takes its colours from here."""

    sky_top: RGB
    sky_horizon: RGB
    ground: RGB
    accent: RGB
    light: RGB
    """The sun, moon, lamp or glow colour."""
    shadow: RGB


@dataclass(frozen=True)
class Scene:
    """One prompt's reading: the inputs of the frame renderer, all plain values."""

    kind: str
    time_of_day: str
    camera: str
    palette: Palette
    colours: tuple[str, ...]
    """The colour words found, in prompt order (for metadata and tests)."""
    layout_seed: int
    """Seeds the layout of the scene (building heights, trees, stars) from (prompt, seed)."""

    @property
    def is_dark(self) -> bool:
        return self.time_of_day in ("night", "dusk")


def _words(*words: str) -> tuple[str, ...]:
    return words


# Each table maps a label to its keywords. Latin keywords match whole words (plural "s"
# allowed); CJK keywords match anywhere, as CJK text has no spaces between words.
_KIND_WORDS: Final[dict[str, tuple[str, ...]]] = {
    "interior": _words(
        "studio",
        "room",
        "kitchen",
        "office",
        "product",
        "table",
        "desk",
        "bedroom",
        "interior",
        "indoor",
        "indoors",
        "cafe",
        "café",
        "restaurant",
        "shop",
        "bottle",
        "perfume",
        "sneaker",
        "mug",
        "cup",
        "lamp",
        "living room",
        "房间",
        "厨房",
        "办公室",
        "产品",
        "桌",
        "室内",
        "部屋",
        "キッチン",
        "オフィス",
        "商品",
    ),
    "city": _words(
        "city",
        "street",
        "skyline",
        "downtown",
        "building",
        "skyscraper",
        "urban",
        "traffic",
        "metropolis",
        "alley",
        "rooftop",
        "tower",
        "town",
        "car",
        "城市",
        "街",
        "大楼",
        "高楼",
        "都市",
        "ビル",
        "東京",
        "东京",
    ),
    "sea": _words(
        "sea",
        "ocean",
        "beach",
        "wave",
        "surf",
        "coast",
        "shore",
        "harbor",
        "harbour",
        "lake",
        "boat",
        "ship",
        "sail",
        "island",
        "bay",
        "tide",
        "海",
        "浪",
        "湖",
        "波",
        "ビーチ",
        "船",
    ),
    "forest": _words(
        "forest",
        "woods",
        "tree",
        "jungle",
        "grove",
        "pine",
        "woodland",
        "park",
        "garden",
        "meadow",
        "leaves",
        "森林",
        "树",
        "林",
        "森",
        "木",
    ),
    "sky": _words(
        "sky",
        "cloud",
        "clouds",
        "sun",
        "moon",
        "star",
        "aurora",
        "bird",
        "flying",
        "plane",
        "airplane",
        "balloon",
        "horizon",
        "heaven",
        "flight",
        "天空",
        "云",
        "星",
        "月",
        "太阳",
        "空",
        "雲",
        "鳥",
    ),
    "abstract": _words(
        "abstract",
        "shape",
        "geometric",
        "particle",
        "fluid",
        "logo",
        "pattern",
        "gradient",
        "抽象",
        "几何",
        "図形",
    ),
}
# Ties go to the first kind here: a product on a table by the sea is still a product shot.
_KIND_PRIORITY: Final = ("interior", "city", "sea", "forest", "sky", "abstract")

_TIME_WORDS: Final[dict[str, tuple[str, ...]]] = {
    "dawn": _words(
        "dawn", "sunrise", "daybreak", "morning", "黎明", "日出", "早晨", "清晨", "朝", "夜明け"
    ),
    "day": _words("noon", "midday", "day", "daytime", "afternoon", "sunny", "白天", "中午", "昼"),
    "sunset": _words("sunset", "golden hour", "sundown", "日落", "夕阳", "夕日", "夕焼け", "夕方"),
    "dusk": _words("dusk", "twilight", "blue hour", "evening", "黄昏", "傍晚", "薄暮"),
    "night": _words(
        "night",
        "moonlit",
        "midnight",
        "moonlight",
        "starry",
        "nighttime",
        "夜",
        "晚上",
        "月光",
        "深夜",
    ),
}

_COLOUR_WORDS: Final[dict[str, tuple[str, ...]]] = {
    "red": _words("red", "crimson", "scarlet", "红", "赤"),
    "orange": _words("orange", "amber", "橙"),
    "yellow": _words("yellow", "黄色"),
    "golden": _words("golden", "gold", "金", "金色"),
    "green": _words("green", "emerald", "绿", "緑"),
    "teal": _words("teal", "turquoise", "cyan", "青"),
    "blue": _words("blue", "azure", "navy", "蓝", "青い"),
    "purple": _words("purple", "violet", "lavender", "紫"),
    "pink": _words("pink", "magenta", "rose", "粉", "ピンク"),
    "white": _words("white", "snow", "snowy", "白"),
    "neon": _words("neon", "cyberpunk", "霓虹", "ネオン"),
    "pastel": _words("pastel", "soft colors", "soft colours", "パステル"),
    "monochrome": _words(
        "monochrome",
        "black and white",
        "black-and-white",
        "b&w",
        "grayscale",
        "greyscale",
        "noir",
        "黑白",
        "白黒",
        "モノクロ",
    ),
}
_HUES: Final[dict[str, RGB]] = {
    "red": (214, 48, 49),
    "orange": (240, 136, 40),
    "yellow": (246, 214, 70),
    "golden": (232, 176, 64),
    "green": (60, 170, 90),
    "teal": (32, 180, 180),
    "blue": (52, 110, 220),
    "purple": (140, 80, 200),
    "pink": (236, 96, 170),
    "white": (236, 238, 242),
    "neon": (255, 40, 200),
}

_CAMERA_PATTERNS: Final[tuple[tuple[str, str], ...]] = (
    ("static", r"\b(?:static|still|locked[- ]off|fixed|tripod)\s+(?:camera|shot)\b|固定镜头|固定"),
    ("pan_left", r"\bpan(?:s|ning|ned)?\s+(?:to\s+(?:the\s+)?)?left\b|向左摇|左にパン"),
    ("pan_right", r"\bpan(?:s|ning|ned)?\s+(?:to\s+(?:the\s+)?)?right\b|向右摇|右にパン"),
    ("tilt_up", r"\btilt(?:s|ing|ed)?\s+up(?:ward)?\b|\bcrane\s+up\b|向上摇"),
    ("tilt_down", r"\btilt(?:s|ing|ed)?\s+down(?:ward)?\b|\bcrane\s+down\b|向下摇"),
    ("zoom_in", r"\bzoom(?:s|ing|ed)?\s+in(?:to)?\b|放大|ズームイン"),
    ("zoom_out", r"\bzoom(?:s|ing|ed)?\s+out\b|缩小|ズームアウト"),
    ("dolly_in", r"\b(?:dolly|push|track)(?:s|ing|ed|es)?\s+(?:in|forward)\b|推镜头|推进"),
    ("dolly_out", r"\b(?:dolly|pull|track)(?:s|ing|ed)?\s+(?:out|back(?:ward)?)\b|拉远|拉镜头"),
    ("orbit", r"\borbit(?:s|ing|ed)?\b|\bcircl(?:e|es|ing)\s+around\b|\b360\b|环绕|回り込"),
)


def describe_scene(prompt: str, *, seed: int, camera_fixed: bool) -> Scene:
    """Read `prompt` into a `Scene`; `camera_fixed` forces a static camera.

    1. Find the scene kind with the most keyword hits (ties by `_KIND_PRIORITY`).
    2. Find the time of day: the first time word in the prompt, else day (night for neon).
    3. Find the camera move: the first camera phrase in the prompt, else a slow zoom in.
    4. Build the palette from the time of day, then tint it with the colour words.
    """
    text = prompt.lower()
    layout_seed = _derive_seed(prompt, seed)

    scores = {kind: _count_hits(text, words) for kind, words in _KIND_WORDS.items()}
    best = max(scores.values())
    kind = next(k for k in _KIND_PRIORITY if scores[k] == best) if best else "abstract"

    colours = tuple(name for _, name in sorted(_find_labels(text, _COLOUR_WORDS)))
    times = sorted(_find_labels(text, _TIME_WORDS))
    time_of_day = times[0][1] if times else ("night" if "neon" in colours else "day")

    camera = "static" if camera_fixed else _find_camera(text)
    palette = _build_palette(time_of_day, colours, layout_seed)
    return Scene(kind, time_of_day, camera, palette, colours, layout_seed)


def _derive_seed(prompt: str, seed: int) -> int:
    """A 63-bit seed from (prompt, seed), stable across processes (unlike `hash`)."""
    digest = hashlib.sha256(f"{seed}\x00{prompt}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 1


@functools.lru_cache(maxsize=1024)
def _keyword_pattern(word: str) -> re.Pattern[str]:
    if word.isascii():
        return re.compile(rf"\b{re.escape(word)}(?:s|es)?\b")
    return re.compile(re.escape(word))


def _find_labels(text: str, table: dict[str, tuple[str, ...]]) -> list[tuple[int, str]]:
    """(first position, label) for each label of `table` that occurs in `text`."""
    found = []
    for label, words in table.items():
        positions = [m.start() for w in words if (m := _keyword_pattern(w).search(text))]
        if positions:
            found.append((min(positions), label))
    return found


def _count_hits(text: str, words: tuple[str, ...]) -> int:
    return sum(len(_keyword_pattern(w).findall(text)) for w in words)


def _find_camera(text: str) -> str:
    hits = [(m.start(), move) for move, rx in _CAMERA_PATTERNS if (m := re.search(rx, text))]
    return min(hits)[1] if hits else DEFAULT_CAMERA


# Base light per time of day: sky top, horizon, ground, light source, shadow.
_TIME_PALETTES: Final[dict[str, tuple[RGB, RGB, RGB, RGB, RGB]]] = {
    "dawn": ((92, 110, 170), (250, 190, 160), (70, 72, 90), (255, 226, 190), (40, 40, 70)),
    "day": ((60, 130, 220), (190, 222, 245), (90, 120, 80), (255, 250, 230), (40, 60, 70)),
    "sunset": ((70, 60, 130), (252, 150, 70), (70, 50, 60), (255, 196, 110), (40, 24, 40)),
    "dusk": ((24, 34, 80), (120, 100, 150), (34, 36, 54), (250, 210, 170), (14, 16, 30)),
    "night": ((6, 10, 28), (30, 42, 82), (14, 16, 26), (226, 232, 255), (4, 6, 14)),
}


def _mix(a: RGB, b: RGB, amount: float) -> RGB:
    r, g, bl = (round(x + (y - x) * amount) for x, y in zip(a, b, strict=True))
    return (r, g, bl)


def _shift_hue(colour: RGB, turn: float) -> RGB:
    h, s, v = colorsys.rgb_to_hsv(*(c / 255 for c in colour))
    r, g, b = colorsys.hsv_to_rgb((h + turn) % 1.0, s, v)
    return (round(r * 255), round(g * 255), round(b * 255))


def _to_grey(colour: RGB) -> RGB:
    luma = round(0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2])
    return (luma, luma, luma)


def _build_palette(time_of_day: str, colours: tuple[str, ...], layout_seed: int) -> Palette:
    """Time-of-day light, tinted by the colour words, with a small seed-driven hue shift.

    Named hues tint the sky and ground and become the accent; "neon" darkens and saturates,
    "pastel" lifts everything towards white, "monochrome" keeps only luminance.
    """
    sky_top, horizon, ground, light, shadow = _TIME_PALETTES[time_of_day]
    hues = [_HUES[c] for c in colours if c in _HUES]
    accent = hues[0] if hues else _shift_hue((236, 120, 60), (layout_seed % 360) / 360)
    for index, hue in enumerate(hues[:2]):
        weight = 0.35 if index == 0 else 0.2
        sky_top = _mix(sky_top, hue, weight * 0.8)
        horizon = _mix(horizon, hue, weight)
        ground = _mix(ground, hue, weight * 0.6)
    if "neon" in colours:
        sky_top, horizon = _mix(sky_top, (10, 0, 30), 0.5), _mix(horizon, (90, 20, 120), 0.5)
        accent = (255, 40, 200) if accent == _HUES["neon"] else accent
    turn = ((layout_seed >> 12) % 1000 / 1000 - 0.5) * 0.04
    sky_top, horizon = _shift_hue(sky_top, turn), _shift_hue(horizon, turn)
    palette = [sky_top, horizon, ground, accent, light, shadow]
    if "pastel" in colours:
        palette = [_mix(c, (248, 240, 246), 0.45) for c in palette]
    if "monochrome" in colours:
        palette = [_to_grey(c) for c in palette]
    return Palette(*palette)
