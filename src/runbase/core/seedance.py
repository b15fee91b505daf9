"""`bytedance/seedance-1.5-pro`: its input schema, output geometry and price.

The schema is the public Runbase one, with the defaults and limits runbase decides where the
public pages are silent (docs/contract.md, "bytedance/seedance-1.5-pro input"). Validation
never corrects input silently: every refusal names the field, the value and what is allowed.

`INPUT_FIELDS` is the one description of the input: `validate_input` takes its choices,
defaults and limits from it, and `input_schema()` turns it into the JSON Schema that
`GET /api/v1/models/...` publishes (tests check that the two agree).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from runbase.errors import InvalidInput

MODEL_ID: Final = "bytedance/seedance-1.5-pro"
FPS: Final = 24
ASPECT_RATIOS: Final = ("16:9", "9:16", "4:3", "3:4", "1:1", "21:9")
RESOLUTIONS: Final = ("480p", "720p", "1080p")
DURATIONS: Final = ("4", "8", "12")
MAX_PROMPT_CHARS: Final = 2000
MAX_IMAGES: Final = 2
MAX_SEED: Final = 2**32 - 1

# Exact output pixel sizes (docs/contract.md, "Output"), (width, height).
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

MAX_IMAGE_BYTES: Final = 30 * 1024 * 1024
"""The largest image runbase reads, fetched or in a data URI."""
MAX_DATA_URI_CHARS: Final = 64 + (MAX_IMAGE_BYTES + 2) // 3 * 4  # base64 and the header
_DATA_URI_PATTERN: Final = r"^data:image/[a-zA-Z0-9.+-]+;base64,[A-Za-z0-9+/=\s]+$"
_DATA_URI = re.compile(_DATA_URI_PATTERN, re.IGNORECASE)


@dataclass(frozen=True)
class InputField:
    """One field of the input: its JSON type, what it allows, its default, what it means."""

    name: str
    kind: Literal["text", "choice", "boolean", "integer", "urls"]
    description: str
    default: Any = None
    choices: tuple[Any, ...] = ()
    limits: tuple[int, int] = (0, 0)
    """text: (min, max) characters; integer: (min, max); urls: (min, max) entries."""
    required: bool = False
    extension: bool = False
    """Not in the public Runbase schema; accepted by runbase (docs/contract.md)."""
    extra_choices: tuple[Any, ...] = field(default=())
    """Also accepted, and read as the choice of the same text (duration's integers)."""


INPUT_FIELDS: Final = (
    InputField(
        "prompt",
        "text",
        "What the video shows. Text in double quotes (or 「」, 『』, “”) is spoken aloud.",
        limits=(1, MAX_PROMPT_CHARS),
        required=True,
    ),
    InputField(
        "aspect_ratio",
        "choice",
        "Width to height. With images and no ratio, the ratio nearest the first image's.",
        default="16:9",
        choices=ASPECT_RATIOS,
    ),
    InputField("resolution", "choice", "Output resolution.", default="720p", choices=RESOLUTIONS),
    InputField(
        "duration",
        "choice",
        "Length in seconds (24 fps, 24 x seconds + 1 frames).",
        default="4",
        choices=DURATIONS,
        extra_choices=tuple(int(d) for d in DURATIONS),
    ),
    InputField(
        "generate_audio",
        "boolean",
        "Add a soundtrack (AAC, 48 kHz stereo) with the spoken dialogue.",
        default=True,
    ),
    InputField(
        "image_urls",
        "urls",
        "0, 1 (first frame) or 2 (first and last frame) images: https://, http:// or "
        "data:image/...;base64, URIs.",
        default=[],
        limits=(0, MAX_IMAGES),
    ),
    InputField(
        "seed",
        "integer",
        "Same seed, similar video; -1 picks one at random.",
        limits=(-1, MAX_SEED),
        extension=True,
    ),
    InputField("camera_fixed", "boolean", "Ask for a camera that does not move.", extension=True),
)
_FIELDS: Final = {spec.name: spec for spec in INPUT_FIELDS}
_KNOWN_KEYS: Final = frozenset(_FIELDS)


def input_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of the input, generated from `INPUT_FIELDS`."""
    properties: dict[str, Any] = {}
    for spec in INPUT_FIELDS:
        schema: dict[str, Any] = {"description": spec.description}
        if spec.kind == "text":
            # "\S": not only whitespace, as the validator's strip() check.
            schema.update(type="string", minLength=spec.limits[0], maxLength=spec.limits[1])
            schema["pattern"] = r"\S"
        elif spec.kind == "choice":
            schema["enum"] = [*spec.choices, *spec.extra_choices]
        elif spec.kind == "boolean":
            schema["type"] = "boolean"
        elif spec.kind == "integer":
            schema.update(type="integer", minimum=spec.limits[0], maximum=spec.limits[1])
        else:
            schema.update(
                type=["array", "null"],
                minItems=spec.limits[0],
                maxItems=spec.limits[1],
                items={"type": "string", "pattern": rf"^https?://|{_DATA_URI_PATTERN}"},
            )
        if spec.default is not None:
            schema["default"] = spec.default
        if spec.extension:
            schema["x-runbase-extension"] = True
        properties[spec.name] = schema
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": properties,
        "required": [spec.name for spec in INPUT_FIELDS if spec.required],
        "additionalProperties": False,
    }


@dataclass(frozen=True)
class Geometry:
    """What a run's output looks like: exact size, frame count and rate."""

    width: int
    height: int
    num_frames: int
    fps: int


def _choices(values: tuple[Any, ...]) -> str:
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
    max_chars = _FIELDS["prompt"].limits[1]
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidInput("input.prompt is required and must be a non-empty string")
    if len(prompt) > max_chars:
        raise InvalidInput(
            f"input.prompt is {len(prompt)} characters; at most {max_chars} are allowed"
        )

    images = raw.get("image_urls", [])
    max_images = _FIELDS["image_urls"].limits[1]
    if images is None:
        images = []
    if not isinstance(images, list) or not all(isinstance(u, str) for u in images):
        raise InvalidInput("input.image_urls must be an array of URL strings")
    if len(images) > max_images:
        raise InvalidInput(
            f"input.image_urls has {len(images)} entries; at most {max_images} are allowed "
            "(first frame, last frame)"
        )
    for index, url in enumerate(images):
        if len(url) > MAX_DATA_URI_CHARS:  # before the pattern, which would read it all
            raise InvalidInput(
                f"input.image_urls[{index}] is {len(url) / 1024 / 1024:.0f} MB of text; an "
                f"image may be at most {MAX_IMAGE_BYTES // 1024 // 1024} MB"
            )
        if not (url.startswith(("https://", "http://")) or _DATA_URI.match(url)):
            raise InvalidInput(
                f"input.image_urls[{index}] must be an https:// or http:// URL or a "
                "data:image/...;base64, URI"
            )

    default_ratio = None if images else _FIELDS["aspect_ratio"].default
    aspect_ratio = _pick(raw, "aspect_ratio", default_ratio)
    resolution = _pick(raw, "resolution", _FIELDS["resolution"].default)

    durations = _FIELDS["duration"]
    duration = raw.get("duration", durations.default)
    if isinstance(duration, int) and not isinstance(duration, bool):
        duration = str(duration)
    if duration not in durations.choices:
        raise InvalidInput(
            f"input.duration {raw.get('duration')!r} is not allowed; "
            f"allowed values: {_choices(durations.choices)}"
        )

    generate_audio = raw.get("generate_audio", _FIELDS["generate_audio"].default)
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
        low, high = _FIELDS["seed"].limits
        if not isinstance(seed, int) or isinstance(seed, bool) or not low <= seed <= high:
            raise InvalidInput(f"input.seed must be an integer, -1 (random) or 0 to {high}")
        validated["seed"] = seed
    if "camera_fixed" in raw:
        if not isinstance(raw["camera_fixed"], bool):
            raise InvalidInput("input.camera_fixed must be a JSON boolean (true or false)")
        validated["camera_fixed"] = raw["camera_fixed"]
    return validated


def _pick(raw: Mapping[str, Any], name: str, default: str | None) -> Any:
    allowed = _FIELDS[name].choices
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


def output_schema() -> dict[str, Any]:
    """The JSON Schema of a succeeded run's `output`, with the exact video it holds."""
    sizes: dict[str, dict[str, list[int]]] = {}
    for (resolution, ratio), (width, height) in SIZES.items():
        sizes.setdefault(resolution, {})[ratio] = [width, height]
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "properties": {
            "urls": {
                "type": "array",
                "minItems": 1,
                "maxItems": 1,
                "items": {"type": "string", "format": "uri"},
                "description": "One MP4 (H.264, yuv420p, faststart) at 24 fps with 24 x "
                "duration + 1 frames, at the size below; with generate_audio one AAC-LC "
                "48 kHz stereo track. A signed link that expires; signed anew on every read.",
            }
        },
        "required": ["urls"],
        "x-fps": FPS,
        "x-sizes": sizes,
    }


def price_table(rates: PriceRates = PriceRates()) -> list[dict[str, Any]]:
    """Every priced combination, from `price_micros` itself (what a create charges)."""
    table = []
    for (resolution, ratio), (width, height) in SIZES.items():
        for duration in DURATIONS:
            for audio in (True, False):
                validated = {
                    "resolution": resolution,
                    "aspect_ratio": ratio,
                    "duration": duration,
                    "generate_audio": audio,
                }
                table.append(
                    {
                        **validated,
                        "width": width,
                        "height": height,
                        "costUsd": price_micros(validated, rates),
                    }
                )
    return table
