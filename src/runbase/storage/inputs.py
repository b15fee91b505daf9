"""Images sent inside a create (data URIs, OpenAI `input_reference` uploads), stored once.

A data URI can weigh 40 MB. Kept in the run's input, it would be read, decoded and sent
back with every poll of the run. At creation (`store_images`) each one goes to the blob
store, content-addressed, and the run's input keeps a short reference in its place:

    stored-image:inputs/<sha256 of the image>.png;data:image/png;base64,

(the blob key, then the data URI's own header, exactly as sent). Three functions read it:

    shown_input(input, sign)      the run object: a signed link to the image instead
    restore_images(blobs, input)  the engine: the data URI back, character for character,
                                  as the client sent it (call it before an engine sees a
                                  run's input: the worker does, for every engine)
    store_images(blobs, input)    creation: data URIs out, references in

Only data URIs whose base64 is canonical (as every encoder writes it without line breaks)
are stored: those are rebuilt exactly. Any other stays inline, as sent.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from runbase.errors import InvalidImage
from runbase.storage.blobs import BlobStore

PREFIX: Final = "stored-image:"
_HEADER: Final = re.compile(r"data:image/([A-Za-z0-9.+-]+);base64,", re.IGNORECASE)
_NOT_EXTENSION: Final = re.compile(r"[^a-z0-9]")


def is_stored(url: str) -> bool:
    return url.startswith(PREFIX)


def has_stored_images(run_input: Mapping[str, Any]) -> bool:
    """Whether the input holds a reference (cheap: the poll's hot path asks it)."""
    urls = run_input.get("image_urls") or ()
    return any(isinstance(url, str) and is_stored(url) for url in urls)


async def store_images(blobs: BlobStore, run_input: Mapping[str, Any]) -> dict[str, Any]:
    """`run_input` with each data URI of `image_urls` stored and replaced by a reference
    (a copy; the same content when there is none)."""
    urls = run_input.get("image_urls") or []
    if not any(isinstance(url, str) and _HEADER.match(url) for url in urls):
        return dict(run_input)
    stored = [await _store(blobs, url) for url in urls]
    return {**run_input, "image_urls": stored}


async def _store(blobs: BlobStore, url: str) -> str:
    header = _HEADER.match(url)
    if header is None:
        return url
    image = await asyncio.to_thread(_canonical_bytes, url[header.end() :])
    if image is None:
        return url  # not canonical base64: kept as sent, so that it is rebuilt exactly
    extension = _NOT_EXTENSION.sub("", header.group(1).lower()) or "img"
    digest = await asyncio.to_thread(lambda: hashlib.sha256(image).hexdigest())
    key = f"inputs/{digest}.{extension}"
    await blobs.put_bytes(key, image, content_type=f"image/{header.group(1).lower()}")
    return f"{PREFIX}{key};{header.group(0)}"


def _canonical_bytes(payload: str) -> bytes | None:
    try:
        image = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        return None
    return image if base64.b64encode(image).decode("ascii") == payload else None


def _parse(reference: str) -> tuple[str, str]:
    """(blob key, data URI header) of a reference."""
    key, _, header = reference.removeprefix(PREFIX).partition(";")
    return key, header


async def restore_images(blobs: BlobStore, run_input: Mapping[str, Any]) -> dict[str, Any]:
    """`run_input` with each reference replaced by the data URI it stands for, exactly as
    the client sent it; `InvalidImage` if a stored image has gone from the blob store."""
    if not has_stored_images(run_input):
        return dict(run_input)
    urls = []
    for index, url in enumerate(run_input["image_urls"]):
        if not is_stored(url):
            urls.append(url)
            continue
        key, header = _parse(url)
        try:
            image = await blobs.read_bytes(key)
        except FileNotFoundError:
            raise InvalidImage(f"image_urls[{index}]: the stored image is gone") from None
        payload = await asyncio.to_thread(base64.b64encode, image)
        urls.append(header + payload.decode("ascii"))
    return {**run_input, "image_urls": urls}


def shown_input(run_input: dict[str, Any], sign: Callable[[str], str]) -> dict[str, Any]:
    """The input as the run object shows it: each reference as `sign(key)`, a signed link
    to the stored image; `run_input` itself when it holds none."""
    if not has_stored_images(run_input):
        return run_input
    urls = [sign(_parse(url)[0]) if is_stored(url) else url for url in run_input["image_urls"]]
    return {**run_input, "image_urls": urls}
