"""Reading `POST /v1/videos` into a Runbase create body (`{"model", "input"}`).

The `openai` SDK always sends multipart/form-data, with an `input_reference` upload as a
file part and an `{"image_url": ...}` reference as an `input_reference[image_url]` field;
JSON bodies are read too. The translation:

    model            a catalog id, or a name in `Settings.openai_model_map` (sora-2, ...);
                     omitted: bytedance/seedance-1.5-pro
    size "WxH"       one of the model's exact sizes -> resolution and aspect_ratio
                     (omitted: 720x1280, OpenAI's default, our 720p 9:16)
    seconds          "4", "8" or "12" -> duration (omitted: "4")
    input_reference  an uploaded image -> the first frame, passed on as a data: URI after
                     the engine's own image rules have accepted it here (so a bad image is
                     a 400 now, not a failed run later); {"image_url": URL} -> image_urls
    generate_audio, seed, camera_fixed
                     Runbase extensions, passed through (the SDK's `extra_body`)

A data: URI keeps the upload inside the run's input: the engine child decodes it with the
same code as any other image, and no second copy or URL of our own has to be managed.
"""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import Mapping
from dataclasses import dataclass
from email import policy
from email.errors import MessageError
from email.parser import BytesParser
from typing import Any, Final

from fastapi import Request
from PIL import Image

from runbase.config import Settings
from runbase.core import seedance
from runbase.core.catalog import MODELS
from runbase.errors import InvalidImage
from runbase.http import submission
from runbase.http.routes.openai_videos._errors import (
    RequestTooLarge,
    VideoRequestError,
    image_error,
)
from runbase.media.images import IMAGE_FORMATS, FetchPolicy, fetch_image
from runbase.parsing import check_text, declared_length, read_int

SORA_NAMES: Final = (
    "sora-2",
    "sora-2-pro",
    "sora-2-2025-10-06",
    "sora-2-pro-2025-10-06",
    "sora-2-2025-12-08",
)
"""OpenAI's model names that `Settings.openai_model_map` maps to Seedance by default."""
DEFAULT_SIZE: Final = "720x1280"
SIZES: Final = {f"{width}x{height}": key for key, (width, height) in seedance.SIZES.items()}
"""Each allowed "WxH" -> (resolution, aspect_ratio)."""

_IMAGE_POLICY: Final = FetchPolicy(max_bytes=seedance.MAX_IMAGE_BYTES)
# The largest image the engine takes, and room for the other fields and the multipart framing.
MAX_BODY_BYTES: Final = _IMAGE_POLICY.max_bytes + 1024 * 1024
_FIELDS: Final = ("prompt", "model", "seconds", "size", "input_reference")
_EXTENSIONS: Final = ("generate_audio", "seed", "camera_fixed")
_MIME_TYPES: Final = {"MPO": "jpeg", **{name: name.lower() for name in IMAGE_FORMATS}}


@dataclass(frozen=True)
class Upload:
    """A file part of the multipart body."""

    filename: str | None
    data: bytes


def allowed_sizes() -> str:
    """The sizes, grouped by resolution, for error messages."""
    groups = []
    for resolution in seedance.RESOLUTIONS:
        sizes = [size for size, (res, _) in SIZES.items() if res == resolution]
        groups.append(f"{', '.join(sizes)} ({resolution})")
    return "; ".join(groups)


async def read_fields(request: Request) -> dict[str, Any]:
    """The request's fields: strings (or JSON values) and `Upload`s, by name."""
    content_type = request.headers.get("content-type", "")
    declared = declared_length(request.headers.get("content-length"))
    if declared is not None and declared > MAX_BODY_BYTES:
        raise _too_large()
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            raise _too_large()
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == "multipart/form-data":
        return await asyncio.to_thread(_parse_multipart, content_type, bytes(body))
    if media_type == "application/json" or media_type.endswith("+json"):
        fields = await submission.parse_json_body(bytes(body))
        if not isinstance(fields, dict):
            raise VideoRequestError(
                "the request body must be a JSON object", param=None, code="invalid_json"
            )
        return fields
    raise VideoRequestError(
        f"send multipart/form-data or application/json, not {media_type or 'no content type'}",
        param=None,
        code="unsupported_content_type",
    )


def _too_large() -> RequestTooLarge:
    return RequestTooLarge(
        f"the request body is larger than {MAX_BODY_BYTES // 2**20} MB; an input_reference "
        f"image may have up to {_IMAGE_POLICY.max_bytes // 2**20} MB"
    )


def _parse_multipart(content_type: str, body: bytes) -> dict[str, Any]:
    """multipart/form-data with the standard library's MIME parser (binary-safe)."""
    try:
        return _read_parts(content_type, body)
    except (ValueError, TypeError, LookupError, MessageError):  # the parser's own faults
        raise _unreadable() from None


def _unreadable() -> VideoRequestError:
    return VideoRequestError(
        "the multipart/form-data body could not be read", param=None, code="invalid_body"
    )


def _read_parts(content_type: str, body: bytes) -> dict[str, Any]:
    head = f"Content-Type: {content_type}\r\n\r\n".encode("latin-1", "replace")
    message = BytesParser(policy=policy.HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise _unreadable()
    fields: dict[str, Any] = {}
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            continue
        # Header bytes that are not ASCII come back as lone surrogates ("surrogateescape").
        name = check_text(name, "a form field's name")
        data = part.get_payload(decode=True)
        data = data if isinstance(data, bytes) else b""
        filename = part.get_filename()
        if filename is not None:
            fields[name] = Upload(filename, data)
            continue
        try:
            value = data.decode()
        except UnicodeDecodeError:
            raise VideoRequestError(f"{name} is not UTF-8 text", param=name) from None
        # The SDK writes an object parameter as `name[key]` fields.
        outer, bracket, inner = name.partition("[")
        if bracket and inner.endswith("]"):
            nested = fields.setdefault(outer, {})
            if isinstance(nested, dict):
                nested[inner[:-1]] = value
                continue
        fields[name] = value
    return fields


def create_body(fields: Mapping[str, Any], settings: Settings) -> tuple[dict[str, Any], Any]:
    """The Runbase create body, and the `input_reference` still to be checked (or None)."""
    unknown = sorted(set(fields) - {*_FIELDS, *_EXTENSIONS})
    if unknown:
        raise VideoRequestError(
            f"unknown parameter {unknown[0]!r}; accepted: {', '.join((*_FIELDS, *_EXTENSIONS))}",
            param=unknown[0],
            code="unknown_parameter",
        )
    prompt = fields.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise VideoRequestError(
            "prompt is required: a text describing the video",
            param="prompt",
            code="missing_required_parameter",
        )
    size = fields.get("size", DEFAULT_SIZE)
    if not isinstance(size, str) or size not in SIZES:
        raise VideoRequestError(
            f"size {size!r} is not supported; supported sizes: {allowed_sizes()}", param="size"
        )
    resolution, aspect_ratio = SIZES[size]
    seconds = fields.get("seconds", seedance.DURATIONS[0])
    if isinstance(seconds, int) and not isinstance(seconds, bool):
        seconds = str(seconds)
    if seconds not in seedance.DURATIONS:
        raise VideoRequestError(
            f"seconds {seconds!r} is not supported; supported: {', '.join(seedance.DURATIONS)}",
            param="seconds",
        )
    model_input: dict[str, Any] = {
        "prompt": prompt,
        "resolution": resolution,
        "aspect_ratio": aspect_ratio,
        "duration": seconds,
    }
    for name in _EXTENSIONS:
        if name in fields:
            model_input[name] = _extension_value(name, fields[name])
    reference = fields.get("input_reference")
    if isinstance(reference, dict):
        model_input["image_urls"] = [_image_url(reference)]
        reference = None
    elif reference is not None and not isinstance(reference, Upload):
        raise VideoRequestError(
            "input_reference must be an uploaded image file or an object {image_url}",
            param="input_reference",
        )
    return {"model": _model(fields.get("model"), settings), "input": model_input}, reference


def _model(name: Any, settings: Settings) -> str:
    if name is None:
        return seedance.MODEL_ID
    model_map = settings.openai_model_map
    if model_map is None:
        model_map = dict.fromkeys(SORA_NAMES, seedance.MODEL_ID)
    if isinstance(name, str):
        if name in MODELS:
            return name
        if name in model_map:
            return model_map[name]
    names = sorted({*MODELS, *model_map})
    raise VideoRequestError(
        f"model {name!r} is not available; available: {', '.join(names)}",
        param="model",
        code="model_not_found",
    )


def _image_url(reference: Mapping[str, Any]) -> str:
    if "file_id" in reference:
        raise VideoRequestError(
            "input_reference.file_id is not supported: upload the image itself, or give "
            "input_reference.image_url",
            param="input_reference",
        )
    url = reference.get("image_url")
    if not isinstance(url, str) or set(reference) != {"image_url"}:
        raise VideoRequestError(
            "input_reference must be {image_url: an https://, http:// or data:image/ URL}",
            param="input_reference",
        )
    return url


def _extension_value(name: str, value: Any) -> Any:
    """A Runbase extension; multipart carries every value as text, so read it back."""
    if not isinstance(value, str):
        return value
    if name == "seed":
        number = read_int(value, allow_negative=True)
        return value if number is None else number
    return {"true": True, "false": False}.get(value.lower(), value)


async def reference_data_uri(upload: Upload) -> str:
    """The uploaded image as a data: URI, once the engine's image rules accept it."""
    payload = base64.b64encode(upload.data).decode("ascii")
    try:
        image_format = await asyncio.to_thread(_checked_format, upload.data, payload)
    except InvalidImage as error:
        raise image_error(error) from None
    return f"data:image/{_MIME_TYPES.get(image_format, 'png')};base64,{payload}"


def _checked_format(data: bytes, payload: str) -> str:
    # fetch_image is the engine's own check: allowed decoders, sides, ratio, pixel bombs.
    fetch_image(f"data:image/png;base64,{payload}", _IMAGE_POLICY, index=0)
    with Image.open(io.BytesIO(data), formats=IMAGE_FORMATS) as image:
        return str(image.format)
