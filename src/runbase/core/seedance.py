"""`bytedance/seedance-1.5-pro`: its input schema, output geometry and price.

The schema is the public Runbase one (runbase-contract.md section 7), with the defaults and
limits of decisions.md. Validation never corrects input silently: every refusal names the
field, the value and what is allowed.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from runbase.errors import InvalidInput

MODEL_ID: Final = "bytedance/seedance-1.5-pro"
FPS: Final = 24
ASPECT_RATIOS: Final = ("16:9", "9:16", "4:3", "3:4", "1:1", "21:9")
RESOLUTIONS: Final = ("480p", "720p", "1080p")
DURATIONS: Final = ("4", "8", "12")
MAX_PROMPT_CHARS: Final = 2000
MAX_IMAGES: Final = 2
MAX_SEED: Final = 2**32 - 1

# Exact output pixel sizes (runbase-contract.md section 8.2), (width, height).
SIZES: Final[Mapping[tuple[str, str], tuple[int, int]]] = {
    ("480p", "16:9"): (864, 496),
    ("480p", "4:3"): (752, 560),
    ("480p", "1:1"): (640, 640),
    ("480p", "3:4"): (560, 752),
    ("480p", "9:16"): (496, 864),
    ("480p", "21:9"): (992, 432),
    ("720p", "16:9"): (1280, 720),
    ("720p", "4:3"): (1112, 834),
    ("720p", "1:1"): (960, 960),
    ("720p", "3:4"): (834, 1112),
    ("720p", "9:16"): (720, 1280),
    ("720p", "21:9"): (1470, 630),
    ("1080p", "16:9"): (1920, 1080),
    ("1080p", "4:3"): (1664, 1248),
    ("1080p", "1:1"): (1440, 1440),
    ("1080p", "3:4"): (1248, 1664),
    ("1080p", "9:16"): (1080, 1920),
    ("1080p", "21:9"): (2206, 946),
}

_KNOWN_KEYS: Final = frozenset(
    {"prompt", "aspect_ratio", "resolution", "duration", "generate_audio", "image_urls"}
    | {"seed", "camera_fixed"}
)
_DATA_URI = re.compile(r"^data:image/[a-z0-9.+-]+;base64,[A-Za-z0-9+/=\s]+$", re.IGNORECASE)


@dataclass(frozen=True)
class Geometry:
    """What a run's output looks like: exact size, frame count and rate."""

    width: int
    height: int
    num_frames: int
    fps: int


def _choices(values: tuple[str, ...]) -> str:
    return ", ".join(f'"{v}"' for v in values)


def validate_input(raw: Mapping[str, Any]) -> dict[str, Any]:
    """Check `raw` against the schema and return it with every default filled in.

    `aspect_ratio` stays None when images are given without one: the worker picks the
    allowed ratio nearest to the first image once it has fetched it.
    """
    unknown = sorted(set(raw) - _KNOWN_KEYS)
    if unknown:
        allowed = ", ".join(sorted(_KNOWN_KEYS))
        raise InvalidInput(f"input.{unknown[0]} is not a known field; allowed fields: {allowed}")

    prompt = raw.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidInput("input.prompt is required and must be a non-empty string")
    if len(prompt) > MAX_PROMPT_CHARS:
        raise InvalidInput(
            f"input.prompt is {len(prompt)} characters; at most {MAX_PROMPT_CHARS} are allowed"
        )

    images = raw.get("image_urls", [])
    if images is None:
        images = []
    if not isinstance(images, list) or not all(isinstance(u, str) for u in images):
        raise InvalidInput("input.image_urls must be an array of URL strings")
    if len(images) > MAX_IMAGES:
        raise InvalidInput(
            f"input.image_urls has {len(images)} entries; at most {MAX_IMAGES} are allowed "
            "(first frame, last frame)"
        )
    for index, url in enumerate(images):
        if not (url.startswith(("https://", "http://")) or _DATA_URI.match(url)):
            raise InvalidInput(
                f"input.image_urls[{index}] must be an https:// or http:// URL or a "
                "data:image/...;base64, URI"
            )

    default_ratio = None if images else "16:9"
    aspect_ratio = _pick(raw, "aspect_ratio", ASPECT_RATIOS, default_ratio)
    resolution = _pick(raw, "resolution", RESOLUTIONS, "720p")

    duration = raw.get("duration", "4")
    if isinstance(duration, int) and not isinstance(duration, bool):
        duration = str(duration)
    if duration not in DURATIONS:
        raise InvalidInput(
            f"input.duration {raw.get('duration')!r} is not allowed; "
            f"allowed values: {_choices(DURATIONS)}"
        )

    generate_audio = raw.get("generate_audio", True)
    if not isinstance(generate_audio, bool):
        raise InvalidInput("input.generate_audio must be a JSON boolean (true or false)")

    validated: dict[str, Any] = {
        "prompt": prompt,
        "aspect_ratio": aspect_ratio,
        "resolution": resolution,
        "duration": duration,
        "generate_audio": generate_audio,
        "image_urls": list(images),
    }
    if "seed" in raw:
        seed = raw["seed"]
        if not isinstance(seed, int) or isinstance(seed, bool) or not -1 <= seed <= MAX_SEED:
            raise InvalidInput(f"input.seed must be an integer, -1 (random) or 0 to {MAX_SEED}")
        validated["seed"] = seed
    if "camera_fixed" in raw:
        if not isinstance(raw["camera_fixed"], bool):
            raise InvalidInput("input.camera_fixed must be a JSON boolean (true or false)")
        validated["camera_fixed"] = raw["camera_fixed"]
    return validated


def _pick(raw: Mapping[str, Any], name: str, allowed: tuple[str, ...], default: str | None) -> Any:
    value = raw.get(name, default)
    if value is None and default is None:
        return None
    if value not in allowed:
        raise InvalidInput(
            f"input.{name} {raw.get(name)!r} is not allowed; allowed values: {_choices(allowed)}"
        )
    return value


def nearest_aspect_ratio(width: int, height: int) -> str:
    """The allowed ratio closest to an image's, compared on a log scale."""
    target = math.log(width / height)

    def distance(ratio: str) -> float:
        w, h = (int(part) for part in ratio.split(":"))
        return abs(math.log(w / h) - target)

    return min(ASPECT_RATIOS, key=distance)


def output_geometry(validated: Mapping[str, Any], aspect_ratio: str | None = None) -> Geometry:
    """The exact output of a validated input: 24 x seconds + 1 frames at 24 fps."""
    ratio = aspect_ratio or validated["aspect_ratio"] or "16:9"
    width, height = SIZES[(validated["resolution"], ratio)]
    return Geometry(width, height, FPS * int(validated["duration"]) + 1, FPS)


@dataclass(frozen=True)
class PriceRates:
    """Micro-USD per million video tokens (the upstream online rates by default)."""

    silent: int = 1_200_000
    audio: int = 2_400_000


def price_micros(validated: Mapping[str, Any], rates: PriceRates = PriceRates()) -> int:
    """Cost in micro-USD: tokens = w x h x 24 x seconds / 1024, rounded up.

    With images and no ratio the price uses the largest size of the resolution, so that the
    price, fixed at creation before the image is fetched, covers whichever ratio is chosen.
    """
    seconds = int(validated["duration"])
    if validated["aspect_ratio"] is None:
        area = max(w * h for (res, _), (w, h) in SIZES.items() if res == validated["resolution"])
    else:
        width, height = SIZES[(validated["resolution"], validated["aspect_ratio"])]
        area = width * height
    rate = rates.audio if validated["generate_audio"] else rates.silent
    # micro-USD = tokens x rate / 1e6, kept in integers to round up exactly.
    numerator = area * FPS * seconds * rate
    return -(-numerator // (1024 * 1_000_000))
