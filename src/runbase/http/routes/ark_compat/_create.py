"""Reading a ModelArk create-task body into a Runbase create body (`{"model", "input"}`).

    model                    seedance-1-5-pro-251215 (BytePlus), doubao-seedance-1-5-pro-251215
                             (Volcengine) or bytedance/seedance-1.5-pro
    content[] text           the prompt, less the text commands it carries (below)
    content[] image_url      role first_frame (or no role, when it is the only image) and
                             last_frame -> image_urls [first, last]
    resolution, ratio        -> resolution, aspect_ratio ("adaptive": the first image's
                             nearest ratio; 16:9 without images)
    duration / frames        4, 8, 12 s / 97, 193, 289 frames (frames wins); -1 -> 4 s
    seed, camera_fixed, generate_audio   the same input fields
    callback_url             -> the run's webhook
    execution_expires_after  -> a Cancel-After deadline

Text commands (`--rs 720p --rt 16:9 --dur 8 --seed 7 --cf true --wm false --fps 24
--frames 97`, long names too) are ModelArk's older way to give the same parameters: they
are taken out of the prompt and read with the same rules as the fields, and where both
give a parameter the text command wins (ModelArk's docs do not settle it; this is how
tests/fakes/modelark.py, our model of ModelArk, reads it). A value runbase cannot honour
is a 400 naming the parameter, never a silent default: a video different from the one
asked for (and paid for) is worse than an error.

The SDK sends `null` for every parameter not given; null reads as absent.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from runbase.core import seedance
from runbase.http.routes.ark_compat._errors import ArkRequestError

MODEL_IDS: Final = {
    "seedance-1-5-pro-251215": seedance.MODEL_ID,
    "doubao-seedance-1-5-pro-251215": seedance.MODEL_ID,
    seedance.MODEL_ID: seedance.MODEL_ID,
}
ADAPTIVE: Final = "adaptive"
RATIOS: Final = (*seedance.ASPECT_RATIOS, ADAPTIVE)
DURATIONS: Final = tuple(int(seconds) for seconds in seedance.DURATIONS)
FRAMES: Final = {seedance.FPS * seconds + 1: seconds for seconds in DURATIONS}
"""Frame counts of the form 25 + 4n that are exactly 4, 8 and 12 s: 97, 193, 289."""
MODEL_CHOOSES: Final = -1
EXPIRES_AFTER: Final = (3600, 259200)

_COMMANDS: Final = {
    "resolution": "resolution",
    "rs": "resolution",
    "ratio": "ratio",
    "rt": "ratio",
    "duration": "duration",
    "dur": "duration",
    "frames": "frames",
    "framespersecond": "framespersecond",
    "fps": "framespersecond",
    "seed": "seed",
    "camerafixed": "camera_fixed",
    "cf": "camera_fixed",
    "watermark": "watermark",
    "wm": "watermark",
}
_COMMAND: Final = re.compile(
    r"(?<!\S)--(" + "|".join(sorted(_COMMANDS, key=len, reverse=True)) + r")\s+(?!--)(\S+)",
    re.IGNORECASE,
)
_GENERATION: Final[tuple[str, ...]] = (
    "resolution",
    "ratio",
    "duration",
    "frames",
    "seed",
    "camera_fixed",
    "watermark",
    "generate_audio",
)
_OTHER: Final = (
    "callback_url",
    "return_last_frame",
    "service_tier",
    "execution_expires_after",
    "priority",
    "draft",
    "safety_identifier",
    "output_format",
    "omni_reference_task_type",
    "tools",
)
_KNOWN: Final = frozenset({"model", "content", *_GENERATION, *_OTHER})
_BOOLEANS: Final = ("camera_fixed", "watermark", "generate_audio")


_IMAGE_ITEM: Final = {
    "type": "object",
    "required": ["type", "image_url"],
    "properties": {
        "type": {"const": "image_url"},
        "role": {"enum": ["first_frame", "last_frame"]},
        "image_url": {
            "type": "object",
            "required": ["url"],
            "properties": {"url": {"type": "string", "pattern": "^(https?://|data:image/)"}},
        },
    },
}
CREATE_SCHEMA: Final = {
    "type": "object",
    "required": ["model", "content"],
    "properties": {
        "model": {"enum": list(MODEL_IDS)},
        "content": {
            "type": "array",
            "minItems": 1,
            "items": {
                "oneOf": [
                    {
                        "type": "object",
                        "required": ["type", "text"],
                        "properties": {"type": {"const": "text"}, "text": {"type": "string"}},
                    },
                    _IMAGE_ITEM,
                ]
            },
        },
        "resolution": {"enum": list(seedance.RESOLUTIONS)},
        "ratio": {"enum": list(RATIOS)},
        "duration": {"enum": [*DURATIONS, MODEL_CHOOSES]},
        "frames": {"enum": list(FRAMES)},
        "seed": {"type": "integer", "minimum": MODEL_CHOOSES, "maximum": seedance.MAX_SEED},
        "camera_fixed": {"type": "boolean"},
        "watermark": {"type": "boolean"},
        "generate_audio": {"type": "boolean"},
        "callback_url": {"type": "string"},
        "execution_expires_after": {
            "type": "integer",
            "minimum": EXPIRES_AFTER[0],
            "maximum": EXPIRES_AFTER[1],
        },
    },
}
"""The create body as the OpenAPI document shows it (text commands in the prompt aside)."""


@dataclass(frozen=True)
class ArkCreate:
    """A create-task body, translated."""

    body: dict[str, Any]
    """The Runbase create body, for `submission.prepare`."""
    cancel_after_ms: int | None


def create_body(body: Mapping[str, Any]) -> ArkCreate:
    """The Runbase create body of a ModelArk create-task body (400s for what we cannot do)."""
    fields = {name: value for name, value in body.items() if value is not None}
    unknown = sorted(set(fields) - _KNOWN)
    if unknown:
        raise ArkRequestError(
            f"The parameter `{unknown[0]}` is not supported by this server.", param=unknown[0]
        )
    model = _model(fields.get("model"))
    text, images = _content(fields.get("content"))
    prompt, commands = _take_commands(text)
    if not prompt:
        raise ArkRequestError(
            "The request failed because it is missing a text prompt: add a `text` item to "
            "`content` that describes the video.",
            param="content.text",
            code="MissingParameter",
        )
    params: dict[str, Any] = {
        name: _read(name, fields[name]) for name in _GENERATION if name in fields
    }
    params.update(commands)  # the text commands win over the fields
    if params.get("watermark") is True:
        raise _invalid("watermark", "watermarks are not supported; leave it false")
    run_body: dict[str, Any] = {"model": model, "input": _model_input(prompt, images, params)}
    if "callback_url" in fields:
        run_body["webhook"] = fields["callback_url"]
    return ArkCreate(run_body, _other_fields(fields))


def _model(name: Any) -> str:
    if name is None:
        raise ArkRequestError(
            "The request failed because it is missing `model`.",
            param="model",
            code="MissingParameter",
        )
    if isinstance(name, str) and name in MODEL_IDS:
        return MODEL_IDS[name]
    raise ArkRequestError(
        f"The model or endpoint {name!r} does not exist or you do not have access to it; "
        f"available: {', '.join(MODEL_IDS)}.",
        param="model",
        code="InvalidEndpointOrModel.NotFound",
        status=404,
    )


def _content(content: Any) -> tuple[str, list[str]]:
    """The text, and the image URLs in the order [first frame, last frame]."""
    if not isinstance(content, list) or not content:
        raise ArkRequestError(
            "The request failed because it is missing `content`: a list with a `text` item "
            "and, optionally, `image_url` items.",
            param="content",
            code="MissingParameter",
        )
    texts: list[str] = []
    by_role: dict[str | None, list[str]] = {None: [], "first_frame": [], "last_frame": []}
    for item in content:
        kind = item.get("type") if isinstance(item, dict) else None
        if kind == "text":
            if not isinstance(item.get("text"), str):
                raise _invalid("content.text", "it must be a string")
            texts.append(item["text"])
        elif kind == "image_url":
            role = item.get("role")
            if not (role is None or isinstance(role, str)) or role not in by_role:
                raise _invalid(
                    "content.role",
                    f"{role!r} is not supported by this model; use first_frame or last_frame",
                )
            by_role[role].append(_image_url(item.get("image_url")))
        elif kind in ("video_url", "audio_url", "draft_task"):
            raise _invalid("content.type", f"{kind} content is not supported by this model")
        else:
            raise _invalid("content.type", "each item's type must be text or image_url")
    if len(texts) > 1:
        raise _invalid("content", "give one text item")
    unroled, first, last = by_role[None], by_role["first_frame"], by_role["last_frame"]
    if len(unroled) + len(first) + len(last) > 1 and unroled:
        # ModelArk's own rule and wording.
        raise _invalid("content", "role must be specified for image contents")
    if len(first) > 1 or len(last) > 1:
        raise _invalid("content.role", "give at most one first_frame and one last_frame image")
    if last and not first:
        raise _invalid("content.role", "a last_frame image needs a first_frame image")
    return (texts[0] if texts else ""), unroled + first + last


def _image_url(image: Any) -> str:
    url = image.get("url") if isinstance(image, dict) else None
    if not isinstance(url, str) or not url:
        raise _invalid("content.image_url.url", "give an image URL or a data:image/... URI")
    if url.startswith("asset://"):
        raise _invalid("content.image_url.url", "asset:// images are not supported here")
    return url


def _take_commands(text: str) -> tuple[str, dict[str, Any]]:
    """The prompt without its text commands, and the parameters the commands give."""
    commands: dict[str, Any] = {}
    for match in _COMMAND.finditer(text):
        command = match.group(1).lower()
        name = _COMMANDS[command]
        value = _read(name, match.group(2), command=command)
        if commands.get(name, value) != value:
            raise _invalid(name, f"the text gives it twice, as {commands[name]!r} and {value!r}")
        commands[name] = value
    prompt = re.sub(r"[ \t]{2,}", " ", _COMMAND.sub("", text)).strip()
    return prompt, commands


def _read(name: str, value: Any, command: str | None = None) -> Any:
    """One generation parameter, from a field (JSON) or a text command (text), checked."""
    shown = name if command is None else f"{name}` (text command `--{command}`"
    if name in ("resolution", "ratio"):
        allowed = seedance.RESOLUTIONS if name == "resolution" else RATIOS
        if value not in allowed:
            raise _invalid(shown, f"{value!r} is not one of {', '.join(allowed)}", param=name)
        return value
    if command is not None:
        value = _from_text(value)
    if name in _BOOLEANS:
        if not isinstance(value, bool):
            raise _invalid(shown, "it must be true or false", param=name)
        return value
    if not isinstance(value, int) or isinstance(value, bool):
        raise _invalid(shown, "it must be an integer", param=name)
    if name == "seed":
        if not MODEL_CHOOSES <= value <= seedance.MAX_SEED:
            raise _invalid(shown, f"it must be -1 (random) or 0 to {seedance.MAX_SEED}", param=name)
        return value
    allowed_values: dict[str, tuple[int, ...]] = {
        "duration": (*DURATIONS, MODEL_CHOOSES),
        "frames": tuple(FRAMES),
        "framespersecond": (seedance.FPS,),
    }
    if value not in allowed_values[name]:
        allowed_text = ", ".join(str(v) for v in allowed_values[name])
        raise _invalid(shown, f"{value} is not supported; supported: {allowed_text}", param=name)
    return value


def _from_text(value: str) -> Any:
    lowered = value.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if re.fullmatch(r"-?[0-9]{1,20}", value):  # ASCII digits: never "²" or "٣"
        return int(value)
    return value


def _model_input(prompt: str, images: list[str], params: Mapping[str, Any]) -> dict[str, Any]:
    if "frames" in params:
        seconds = FRAMES[params["frames"]]
    else:
        duration = params.get("duration", MODEL_CHOOSES)
        # "The model chooses" (-1, and the default): 4 s, the shortest and cheapest.
        seconds = DURATIONS[0] if duration == MODEL_CHOOSES else duration
    model_input: dict[str, Any] = {
        "prompt": prompt,
        "duration": str(seconds),
        "image_urls": images,
    }
    if "resolution" in params:
        model_input["resolution"] = params["resolution"]
    ratio = params.get("ratio", ADAPTIVE)
    if ratio != ADAPTIVE:
        model_input["aspect_ratio"] = ratio
    for name in ("generate_audio", "seed", "camera_fixed"):
        if name in params:
            model_input[name] = params[name]
    return model_input


def _other_fields(fields: Mapping[str, Any]) -> int | None:
    """Check the fields that are not generation parameters; the Cancel-After they ask for."""
    expected: dict[str, Any] = {
        "return_last_frame": False,
        "service_tier": "default",
        "priority": 0,
        "draft": False,
        "output_format": "mp4",
    }
    for name, supported in expected.items():
        if name in fields and (
            fields[name] != supported or type(fields[name]) is not type(supported)
        ):
            raise _invalid(name, f"only {supported!r} is supported by this server")
    for name in ("omni_reference_task_type", "tools"):
        if fields.get(name) not in (None, []):
            raise _invalid(name, "it is not supported by this model")
    if "safety_identifier" in fields and not isinstance(fields["safety_identifier"], str):
        raise _invalid("safety_identifier", "it must be a string")
    if "callback_url" in fields and not isinstance(fields["callback_url"], str):
        raise _invalid("callback_url", "it must be an https:// URL")
    expires = fields.get("execution_expires_after")
    if expires is None:
        return None
    low, high = EXPIRES_AFTER
    if not isinstance(expires, int) or isinstance(expires, bool) or not low <= expires <= high:
        raise _invalid("execution_expires_after", f"it must be an integer from {low} to {high}")
    return expires * 1000


def _invalid(shown: str, reason: str, *, param: str | None = None) -> ArkRequestError:
    return ArkRequestError(
        f"The parameter `{shown}` specified in the request is not valid: {reason}.",
        param=param or shown,
    )
