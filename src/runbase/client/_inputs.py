"""Typed input for `bytedance/seedance-1.5-pro`, and local images as data: URIs.

The server is the judge of input: these types help an editor and a type checker, but the
SDK sends what it is given and lets the server refuse it with `InvalidInput`, so that one
schema decides, even against a newer server.
"""

from __future__ import annotations

import base64
import mimetypes
import os
from dataclasses import KW_ONLY, dataclass
from pathlib import Path
from typing import Any, Final, Literal

SEEDANCE_1_5_PRO: Final = "bytedance/seedance-1.5-pro"

AspectRatio = Literal["16:9", "9:16", "4:3", "3:4", "1:1", "21:9"]
Resolution = Literal["480p", "720p", "1080p"]
Duration = Literal["4", "8", "12"]

# Magic numbers of the formats the server accepts, for files without a telling suffix.
_SIGNATURES: Final = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF8", "image/gif"),
    (b"BM", "image/bmp"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
)


@dataclass(frozen=True)
class SeedanceInput:
    """The `input` of a `bytedance/seedance-1.5-pro` run.

    Fields left as None are not sent, so the server's defaults apply: 16:9 (or the ratio
    nearest the first image), 720p, 4 seconds, with audio.

    Example:
        >>> SeedanceInput("A ceramic lamp on a desk", duration="8", generate_audio=False)
        >>> SeedanceInput(
        ...     'She says "hello"',
        ...     image_urls=(encode_image("first.png"), "https://example.com/last.jpg"),
        ... )
    """

    prompt: str
    """What happens in the video; text in double quotes is spoken."""
    _: KW_ONLY
    aspect_ratio: AspectRatio | None = None
    resolution: Resolution | None = None
    duration: Duration | None = None
    """Seconds, as a string: "4", "8" or "12"."""
    generate_audio: bool | None = None
    image_urls: tuple[str, ...] = ()
    """The first frame, then optionally the last: https:// URLs or data: URIs."""
    seed: int | None = None
    """A runbase extension: -1 (random) or 0 to 2**32 - 1."""
    camera_fixed: bool | None = None
    """A runbase extension: ask for a locked camera."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON object sent as `input`, without the fields left to the server."""
        data: dict[str, Any] = {"prompt": self.prompt}
        optional = {
            "aspect_ratio": self.aspect_ratio,
            "resolution": self.resolution,
            "duration": self.duration,
            "generate_audio": self.generate_audio,
            "seed": self.seed,
            "camera_fixed": self.camera_fixed,
        }
        data.update({name: value for name, value in optional.items() if value is not None})
        if self.image_urls:
            data["image_urls"] = list(self.image_urls)
        return data


def encode_image(path: str | os.PathLike[str]) -> str:
    """A local image file as a `data:image/...;base64,` URI, for `image_urls`.

    The server cannot fetch files from your disk, so local images travel inside the
    request. Raises `ValueError` when the file is not a recognisable image.

    Example:
        >>> encode_image("first.png")[:30]
        'data:image/png;base64,iVBORw0K'
    """
    content = Path(path).read_bytes()
    media_type = _sniff_media_type(content) or mimetypes.guess_type(str(path))[0]
    if media_type is None or not media_type.startswith("image/"):
        raise ValueError(f"{os.fspath(path)} does not look like an image file")
    return f"data:{media_type};base64,{base64.b64encode(content).decode('ascii')}"


def _sniff_media_type(content: bytes) -> str | None:
    if content[:4] == b"RIFF" and content[8:12] == b"WEBP":
        return "image/webp"
    for signature, media_type in _SIGNATURES:
        if content.startswith(signature):
            return media_type
    return None
