"""The one way runbase reads a user's image: fetch it safely, check it, fit it to a frame.

`image_urls` are URLs chosen by strangers and fetched from inside our network, so this
module is a server-side request forgery (SSRF) boundary as much as an image loader:

- Every address a host name resolves to is checked before any connection is made; loopback,
  private, link-local (the 169.254.169.254 cloud metadata service), shared, multicast,
  unspecified and reserved addresses are refused, including IPv4 hidden inside IPv6.
- The connection goes to the very address that was checked (`runbase.outbound`), so a DNS
  answer that changes between a check and a connect (DNS rebinding) cannot swap in another
  address, and no difference between two URL parsers can make us check one host and
  connect to another. The URL, the Host header, TLS SNI and certificate checks all keep the
  real host name.
- Redirects are followed by hand, at most `max_redirects`, each one through the same backend
  and therefore the same check. No proxy is ever used: a proxy would resolve the name
  itself, out of our sight.
- `timeout_s` is one deadline for the whole fetch (name resolution, connects, TLS, every
  redirect and every read), so a server that dribbles a byte at a time cannot hold a worker.
- The body is streamed and abandoned as soon as it passes `max_bytes`.
- Only the decoders for JPEG, PNG, WEBP, BMP, TIFF and GIF are ever run, chosen by what
  Pillow recognises in the bytes (never the URL or Content-Type); no other Pillow plugin
  (EPS, for one, hands data to Ghostscript) sees untrusted bytes. Sizes are checked from the
  header before pixels are decoded, and Pillow's decompression-bomb warning is a refusal.

Transfers use `runbase.outbound`'s httpcore pool, where the address pinning and the deadline
are enforced; httpx supplies the URL parser.

Every refusal is `InvalidImage`, whose message names the rule and the image
(`image_urls[N]`), because it becomes the failed run's error.
"""

from __future__ import annotations

import base64
import binascii
import io
import ipaddress
import re
import warnings
from dataclasses import dataclass
from typing import Final

import httpcore
import httpx
import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from runbase.errors import InvalidImage
from runbase.outbound import Deadline, IPAddress, checked_pool, refusal_reason

__all__ = [
    "IMAGE_FORMATS",
    "FetchPolicy",
    "check_address",
    "fetch_image",
    "fit_image",
]

IMAGE_FORMATS: Final = ("JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF")
"""The decoders allowed, by Pillow's name. JPEG includes the multi-picture JPEGs that many
phone cameras write, which Pillow then reports as "MPO"."""

_FORMAT_LIST: Final = "JPEG, PNG, WEBP, BMP, TIFF or GIF"
_DATA_URI: Final = re.compile(r"data:image/[a-z0-9.+-]+;base64,(?P<payload>.*)", re.I | re.S)
_WHITESPACE: Final = re.compile(r"\s+")
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
_HEADERS: Final = (
    (b"User-Agent", b"runbase-image-fetch/1"),
    (b"Accept", b"image/*"),
    # Compressed transfer would let a small body inflate past max_bytes unseen.
    (b"Accept-Encoding", b"identity"),
)
_SIDEWAYS_ORIENTATIONS: Final = frozenset({5, 6, 7, 8})


@dataclass(frozen=True, kw_only=True)
class FetchPolicy:
    """What a fetched image may be and where it may come from.

    `max_bytes` is the model's rule (`core.catalog.ModelSpec.max_image_bytes`), given by
    whoever fetches for a run; the other limits are the same for every model so far.

    `allow_private_hosts` turns the address check off entirely (operators on a closed
    network, tests on 127.0.0.1). `allowed_hosts` turns it off for the named hosts only,
    matched against the URL's host as written (a name or an IP literal).
    """

    max_bytes: int
    allow_private_hosts: bool = False
    allowed_hosts: frozenset[str] = frozenset()
    timeout_s: float = 10.0
    max_redirects: int = 3
    min_side: int = 300
    max_side: int = 6000
    min_aspect: float = 0.4
    max_aspect: float = 2.5

    def trusts_host(self, host: str) -> bool:
        """True when `host` skips the address check."""
        if self.allow_private_hosts:
            return True
        name = host.strip("[]").lower()
        return any(name == allowed.strip("[]").lower() for allowed in self.allowed_hosts)


def fetch_image(url: str, policy: FetchPolicy, *, index: int = 0) -> Image.Image:
    """Fetch, check and decode the image at `url` (http, https or a base64 data URI).

    Returns an RGB image with its EXIF orientation applied (the first frame of an animated
    one). `index` is the image's position in `image_urls`, for the error messages.

    Raises:
        InvalidImage: the URL, the host, the transfer or the image breaks a rule.
    """
    label = f"image_urls[{index}]"
    if url[:5].lower() == "data:":
        data = _decode_data_uri(url, policy, label)
    elif url[:8].lower() == "https://" or url[:7].lower() == "http://":
        data = _download(url, policy, index)
    else:
        raise InvalidImage(f"{label}: only https://, http:// and data:image/ URLs are allowed")
    return _decode_image(data, policy, label)


def fit_image(image: Image.Image, width: int, height: int) -> np.ndarray:
    """Centre-crop `image` to the ratio width:height, then resize it: HxWx3 uint8 RGB.

    The crop box is passed to the resize rather than cropped first, so the edges are
    sampled with sub-pixel accuracy and the image is resampled only once.
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"target size {width}x{height} must be positive")
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    source_width, source_height = rgb.size
    target_ratio = width / height
    if source_width / source_height > target_ratio:
        kept = source_height * target_ratio
        box = ((source_width - kept) / 2, 0.0, (source_width + kept) / 2, float(source_height))
    else:
        kept = source_width / target_ratio
        box = (0.0, (source_height - kept) / 2, float(source_width), (source_height + kept) / 2)
    # reducing_gap: a large downscale first shrinks by whole factors (cheap box filter),
    # then LANCZOS does the last step; the result is indistinguishable and much faster.
    fitted = rgb.resize((width, height), Image.Resampling.LANCZOS, box=box, reducing_gap=3.0)
    return np.asarray(fitted, dtype=np.uint8)


def check_address(
    address: str | IPAddress,
    policy: FetchPolicy,
    *,
    host: str | None = None,
    index: int = 0,
) -> None:
    """Refuse `address` (what `host` resolved to) unless it is public or the host trusted.

    Raises:
        InvalidImage: the address is not one images may be fetched from.
    """
    ip = ipaddress.ip_address(address) if isinstance(address, str) else address
    name = str(ip) if host is None else host.strip("[]")
    if policy.trusts_host(name):
        return
    reason = refusal_reason(ip)
    if reason is None:
        return
    subject = name if _is_literal(name, ip) else f"{name} resolves to {ip}, which"
    raise InvalidImage(
        f"image_urls[{index}]: {subject} is {reason}; images are only fetched from public addresses"
    )


def _is_literal(name: str, ip: IPAddress) -> bool:
    try:
        return ipaddress.ip_address(name) == ip
    except ValueError:
        return False


_TRANSFER_ERRORS: Final = (
    httpcore.NetworkError,
    httpcore.ProtocolError,
    httpcore.UnsupportedProtocol,
    httpcore.ProxyError,
    httpcore.ConnectionNotAvailable,
)


def _download(url: str, policy: FetchPolicy, index: int) -> bytes:
    """GET `url`, following at most `max_redirects` redirects, within the deadline."""
    label = f"image_urls[{index}]"
    deadline = Deadline(policy.timeout_s)
    current = _parse_url(url, label)
    pool = checked_pool(
        lambda host, address: check_address(address, policy, host=host, index=index), deadline
    )
    try:
        with pool:
            for _ in range(policy.max_redirects + 1):
                target = _fetch_once(pool, current, policy, deadline, label)
                if isinstance(target, bytes):
                    return target
                current = target
    except httpcore.TimeoutException as exc:
        raise InvalidImage(
            f"{label}: fetching {_show(url)} took longer than {policy.timeout_s:g} s"
        ) from exc
    except _TRANSFER_ERRORS as exc:
        reason = str(exc) or type(exc).__name__
        raise InvalidImage(f"{label}: fetching {_show(url)} failed: {reason}") from exc
    raise InvalidImage(f"{label}: {_show(url)} redirected more than {policy.max_redirects} times")


def _fetch_once(
    pool: httpcore.ConnectionPool,
    url: httpx.URL,
    policy: FetchPolicy,
    deadline: Deadline,
    label: str,
) -> bytes | httpx.URL:
    """One GET: the body, or the URL a redirect points to."""
    request_url = httpcore.URL(
        scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path
    )
    extensions = {"timeout": deadline.timeouts()}
    with pool.stream("GET", request_url, headers=list(_HEADERS), extensions=extensions) as resp:
        headers = {name.lower(): value for name, value in resp.headers}
        if resp.status in _REDIRECTS and b"location" in headers:
            location = headers[b"location"].decode("latin-1")
            try:
                return _parse_url(str(url.join(location)), label)
            except httpx.InvalidURL as exc:
                raise InvalidImage(f"{label}: {_show(str(url))} redirected to a bad URL") from exc
        if resp.status != 200:
            raise InvalidImage(f"{label}: fetching {_show(str(url))} failed: HTTP {resp.status}")
        declared = headers.get(b"content-length", b"")
        if declared.isdigit() and int(declared) > policy.max_bytes:
            raise _too_large(label, policy)
        body = bytearray()
        for chunk in resp.iter_stream():
            body += chunk
            if len(body) > policy.max_bytes:
                raise _too_large(label, policy)
        return bytes(body)


def _parse_url(url: str, label: str) -> httpx.URL:
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise InvalidImage(f"{label}: {_show(url)} is not a valid URL") from exc
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise InvalidImage(f"{label}: {_show(url)} is not an http:// or https:// URL")
    return parsed


def _decode_data_uri(url: str, policy: FetchPolicy, label: str) -> bytes:
    match = _DATA_URI.fullmatch(url)
    if match is None:
        raise InvalidImage(f"{label}: a data URI must look like data:image/<type>;base64,<data>")
    payload = _WHITESPACE.sub("", match["payload"])
    # Refuse before decoding: base64 is 4 characters for every 3 bytes.
    if len(payload) > (policy.max_bytes + 2) // 3 * 4:
        raise _too_large(label, policy)
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidImage(f"{label}: the data URI is not valid base64") from exc
    if len(data) > policy.max_bytes:
        raise _too_large(label, policy)
    return data


def _decode_image(data: bytes, policy: FetchPolicy, label: str) -> Image.Image:
    """Open `data` with the allowed decoders only, check its size, decode it to RGB."""
    with warnings.catch_warnings():
        # Pillow only warns between MAX_IMAGE_PIXELS and twice that; any bomb is refused.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
        except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
            raise InvalidImage(f"{label}: image has too many pixels to decode safely") from exc
        except UnidentifiedImageError as exc:
            raise InvalidImage(
                f"{label}: the data is not a supported image ({_FORMAT_LIST})"
            ) from exc
        with image:
            _check_geometry(image, policy, label)
            try:
                image.load()
                upright = ImageOps.exif_transpose(image)
                return _flatten_rgb(upright)
            except (Image.DecompressionBombWarning, Image.DecompressionBombError) as exc:
                raise InvalidImage(f"{label}: image has too many pixels to decode safely") from exc
            except Exception as exc:
                # Decoders raise many types on malformed data (OSError, ValueError,
                # SyntaxError, struct.error, ...); to the user they all mean the same.
                raise InvalidImage(
                    f"{label}: the {image.format} image is damaged or cannot be decoded"
                ) from exc


def _check_geometry(image: Image.Image, policy: FetchPolicy, label: str) -> None:
    """Check the sides, then the aspect ratio as displayed, before pixels are decoded.

    The sides come first and from the header alone: reading EXIF can decode the whole
    image (a PNG may keep it after the pixel data), which an oversized image must not get.
    Both sides share one range, so rotation cannot change that verdict.
    """
    width, height = image.size
    if not (policy.min_side <= width <= policy.max_side) or not (
        policy.min_side <= height <= policy.max_side
    ):
        raise InvalidImage(
            f"{label}: image is {width}x{height} px; "
            f"each side must be {policy.min_side} to {policy.max_side} px"
        )
    try:
        orientation = image.getexif().get(ExifTags.Base.Orientation)
    except Exception:
        orientation = None  # unreadable EXIF: exif_transpose leaves the image as it is
    if orientation in _SIDEWAYS_ORIENTATIONS:
        width, height = height, width
    aspect = width / height
    if not policy.min_aspect <= aspect <= policy.max_aspect:
        raise InvalidImage(
            f"{label}: image is {width}x{height} px, an aspect ratio (width / height) of "
            f"{aspect:.2f}; it must be {policy.min_aspect:g} to {policy.max_aspect:g}"
        )


def _flatten_rgb(image: Image.Image) -> Image.Image:
    """RGB, with any transparency composited onto white (as a browser shows it)."""
    if image.mode == "RGB":
        return image
    has_alpha = image.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in image.info
    if not has_alpha:
        return image.convert("RGB")
    rgba = image.convert("RGBA")
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(white, rgba).convert("RGB")


def _too_large(label: str, policy: FetchPolicy) -> InvalidImage:
    return InvalidImage(f"{label}: image is larger than {_megabytes(policy.max_bytes)}")


def _megabytes(count: int) -> str:
    if count >= 1024 * 1024 and count % (1024 * 1024) == 0:
        return f"{count // (1024 * 1024)} MB"
    return f"{count} bytes"


def _show(url: str) -> str:
    """A URL fit for an error message: no credentials, not too long, no data URIs."""
    if url[:5].lower() == "data:":
        return "the data URI"
    try:
        parsed = httpx.URL(url)
        shown = str(parsed.copy_with(username=None, password=None)) if parsed.userinfo else url
    except (httpx.InvalidURL, TypeError, ValueError):
        shown = url
    return shown if len(shown) <= 200 else shown[:197] + "..."
