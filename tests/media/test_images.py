"""The image fetcher and fitter, against a real HTTP server on 127.0.0.1.

Rule tests use `allow_private_hosts=True` (the server is on loopback); the address tests
run without it, under `loopback_only`, which fails any connection off this machine.
"""

from __future__ import annotations

import base64
import ipaddress
import socket
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from media_samples import ImageServer, encode_image, png_claiming, save_image
from PIL import Image, ImageFile

from runbase.core.seedance import MAX_IMAGE_BYTES
from runbase.errors import InvalidImage
from runbase.media.images import FetchPolicy, check_address, fetch_image, fit_image
from runbase.outbound import shared_ssl_context
from support import fake_resolver

PUBLIC = FetchPolicy(max_bytes=MAX_IMAGE_BYTES)
OPEN = FetchPolicy(max_bytes=MAX_IMAGE_BYTES, allow_private_hosts=True)


# --- formats -------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF"])
def test_each_allowed_format_is_fetched_as_rgb(image_server: ImageServer, fmt: str) -> None:
    url = image_server.serve("/picture", encode_image(fmt, (640, 480)))

    image = fetch_image(url, OPEN)

    assert image.mode == "RGB"
    assert image.size == (640, 480)


def test_transparency_is_composited_onto_white(image_server: ImageServer) -> None:
    clear = Image.new("RGBA", (400, 400), (255, 0, 0, 0))
    url = image_server.serve("/clear.png", save_image(clear, "PNG"))

    image = fetch_image(url, OPEN)

    assert image.getpixel((200, 200)) == (255, 255, 255)


def test_an_animated_gif_gives_its_first_frame(image_server: ImageServer) -> None:
    red = Image.new("RGB", (400, 300), (255, 0, 0))
    blue = Image.new("RGB", (400, 300), (0, 0, 255))
    url = image_server.serve(
        "/anim.gif", save_image(red, "GIF", save_all=True, append_images=[blue], duration=100)
    )

    image = fetch_image(url, OPEN)

    red_channel, _, blue_channel = image.getpixel((10, 10))  # type: ignore[misc]
    assert red_channel > 200 and blue_channel < 50


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'<svg xmlns="http://www.w3.org/2000/svg" width="500" height="500"/>', "image/svg+xml"),
        (b"hello, this is text", "image/png"),  # the Content-Type is not believed
        (encode_image("ICO", (256, 256)), "image/x-icon"),  # Pillow reads ICO; we do not
        (encode_image("PPM", (400, 400)), "image/jpeg"),
        (b"", "image/png"),
    ],
)
def test_an_unsupported_format_is_refused(
    image_server: ImageServer, body: bytes, content_type: str
) -> None:
    url = image_server.serve("/thing", body, content_type=content_type)

    with pytest.raises(InvalidImage, match=r"image_urls\[0\]: the data is not a supported image"):
        fetch_image(url, OPEN)


def test_a_damaged_image_is_refused(image_server: ImageServer) -> None:
    whole = encode_image("JPEG", (800, 600))
    url = image_server.serve("/cut.jpg", whole[: len(whole) // 2])

    with pytest.raises(InvalidImage, match="JPEG image is damaged"):
        fetch_image(url, OPEN)


# --- geometry ------------------------------------------------------------------------------


def test_a_small_image_is_refused_with_its_size(image_server: ImageServer) -> None:
    url = image_server.serve("/small.png", encode_image("PNG", (200, 200)))

    with pytest.raises(InvalidImage) as refused:
        fetch_image(url, OPEN, index=1)

    assert refused.value.message == (
        "image_urls[1]: image is 200x200 px; each side must be 300 to 6000 px"
    )
    assert refused.value.code == "invalid_image"


def test_a_side_over_the_maximum_is_refused(image_server: ImageServer) -> None:
    url = image_server.serve("/big.png", encode_image("PNG", (1200, 800)))

    with pytest.raises(InvalidImage, match="1200x800 px; each side must be 300 to 1000 px"):
        fetch_image(
            url, FetchPolicy(max_bytes=MAX_IMAGE_BYTES, allow_private_hosts=True, max_side=1000)
        )


def test_the_default_maximum_side_is_6000(image_server: ImageServer) -> None:
    wide = Image.new("RGB", (6001, 3000), (10, 20, 30))
    url = image_server.serve("/wide.png", save_image(wide, "PNG", compress_level=1))

    with pytest.raises(InvalidImage, match="6001x3000 px; each side must be 300 to 6000 px"):
        fetch_image(url, OPEN)


@pytest.mark.parametrize(
    ("size", "ratio"), [((300, 800), "0.38"), ((1000, 350), "2.86")], ids=["narrow", "wide"]
)
def test_an_aspect_ratio_out_of_range_is_refused(
    image_server: ImageServer, size: tuple[int, int], ratio: str
) -> None:
    url = image_server.serve("/ratio.png", encode_image("PNG", size))

    with pytest.raises(InvalidImage, match=rf"aspect ratio \(width / height\) of {ratio}"):
        fetch_image(url, OPEN)


@pytest.mark.parametrize("size", [(10_000, 10_000), (20_000, 20_000)], ids=["warning", "error"])
def test_a_decompression_bomb_is_refused_before_decoding(
    image_server: ImageServer, size: tuple[int, int]
) -> None:
    url = image_server.serve("/bomb.png", png_claiming(*size))

    with pytest.raises(InvalidImage, match="too many pixels to decode safely"):
        fetch_image(
            url, FetchPolicy(max_bytes=MAX_IMAGE_BYTES, allow_private_hosts=True, max_side=50_000)
        )


def test_sides_are_checked_before_any_pixel_is_decoded(
    image_server: ImageServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 49 megapixels passes Pillow's own bomb check, so our side check is what must stop it,
    # from the header alone.
    loads: list[str] = []
    real_load = ImageFile.ImageFile.load

    def recording_load(self: ImageFile.ImageFile) -> Any:
        loads.append(f"{self.size}")
        return real_load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", recording_load)
    url = image_server.serve("/huge.png", png_claiming(7000, 7000))

    with pytest.raises(InvalidImage, match="7000x7000 px; each side must be 300 to 6000 px"):
        fetch_image(url, OPEN)

    assert loads == []


def test_exif_orientation_is_applied(image_server: ImageServer) -> None:
    stored = Image.new("RGB", (640, 400), (0, 200, 0))
    stored.paste((255, 0, 0), (0, 0, 80, 80))  # a red top-left corner, as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    url = image_server.serve("/turned.jpg", save_image(stored, "JPEG", exif=exif, quality=95))

    image = fetch_image(url, OPEN)

    assert image.size == (400, 640)
    red, green, _ = image.getpixel((400 - 20, 20))  # type: ignore[misc]
    assert red > 200 and green < 60, "the red corner moved to the top right"


def test_the_aspect_ratio_is_judged_as_displayed(image_server: ImageServer) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6
    stored = Image.new("RGB", (900, 400), (0, 200, 0))  # 2.25 as stored, 0.44 upright
    url = image_server.serve("/turned.jpg", save_image(stored, "JPEG", exif=exif))
    policy = FetchPolicy(max_bytes=MAX_IMAGE_BYTES, allow_private_hosts=True, min_aspect=1.0)

    with pytest.raises(InvalidImage, match=r"image is 400x900 px, an aspect ratio .* of 0\.44"):
        fetch_image(url, policy)


# --- transfer ------------------------------------------------------------------------------


@pytest.mark.parametrize("content_length", [True, False], ids=["declared", "undeclared"])
def test_a_body_over_max_bytes_is_refused(image_server: ImageServer, content_length: bool) -> None:
    noise = np.random.default_rng(0).integers(0, 255, (400, 400, 3), dtype=np.uint8)
    body = save_image(Image.fromarray(noise), "PNG")
    url = image_server.serve("/noise.png", body, content_length=content_length)
    policy = FetchPolicy(max_bytes=10_000, allow_private_hosts=True)

    with pytest.raises(InvalidImage, match="image is larger than 10000 bytes"):
        fetch_image(url, policy)


def test_a_slow_body_hits_the_total_deadline(image_server: ImageServer) -> None:
    # Each byte arrives well within any per-read timeout; only a total deadline stops it.
    url = image_server.dribble("/slow.png", encode_image("PNG", (400, 400)), interval=0.02)
    started = time.monotonic()

    with pytest.raises(InvalidImage, match=r"took longer than 0\.5 s"):
        fetch_image(
            url, FetchPolicy(max_bytes=MAX_IMAGE_BYTES, allow_private_hosts=True, timeout_s=0.5)
        )

    assert time.monotonic() - started < 1.5


def test_a_silent_server_hits_the_deadline(image_server: ImageServer) -> None:
    url = image_server.stall("/silent.png", seconds=3)
    started = time.monotonic()

    with pytest.raises(InvalidImage, match=r"took longer than 0\.3 s"):
        fetch_image(
            url, FetchPolicy(max_bytes=MAX_IMAGE_BYTES, allow_private_hosts=True, timeout_s=0.3)
        )

    assert time.monotonic() - started < 1.3


@pytest.mark.parametrize("status", [404, 500])
def test_an_http_error_is_refused(image_server: ImageServer, status: int) -> None:
    url = image_server.serve("/gone.png", b"nope", status=status)

    with pytest.raises(InvalidImage, match=f"failed: HTTP {status}"):
        fetch_image(url, OPEN)


def test_a_closed_port_is_refused(image_server: ImageServer) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # free, and nothing listens once closed

    with pytest.raises(InvalidImage, match=r"image_urls\[0\]: fetching .* failed"):
        fetch_image(f"http://127.0.0.1:{port}/x.png", OPEN)


def test_redirects_are_followed_up_to_the_limit(image_server: ImageServer) -> None:
    image_server.serve("/final.png", encode_image("PNG", (400, 400)))
    image_server.redirect("/r3", "/final.png", status=308)  # relative
    image_server.redirect("/r2", image_server.url("/r3"), status=301)
    url = image_server.redirect("/r1", image_server.url("/r2"))

    image = fetch_image(
        url, FetchPolicy(max_bytes=MAX_IMAGE_BYTES, allow_private_hosts=True, max_redirects=3)
    )

    assert image.size == (400, 400)
    assert image_server.hits == ["/r1", "/r2", "/r3", "/final.png"]


def test_one_redirect_too_many_is_refused(image_server: ImageServer) -> None:
    image_server.serve("/final.png", encode_image("PNG", (400, 400)))
    image_server.redirect("/r3", "/final.png")
    image_server.redirect("/r2", "/r3")
    url = image_server.redirect("/r1", "/r2")

    with pytest.raises(InvalidImage, match="redirected more than 2 times"):
        fetch_image(
            url, FetchPolicy(max_bytes=MAX_IMAGE_BYTES, allow_private_hosts=True, max_redirects=2)
        )

    assert "/final.png" not in image_server.hits


@pytest.mark.parametrize("location", ["file:///etc/passwd", "ftp://127.0.0.1/x.png"])
def test_a_redirect_off_http_is_refused(image_server: ImageServer, location: str) -> None:
    url = image_server.redirect("/r", location)

    with pytest.raises(InvalidImage, match="is not an http:// or https:// URL"):
        fetch_image(url, OPEN)


# --- data URIs and schemes -----------------------------------------------------------------


def test_a_data_uri_is_decoded() -> None:
    payload = base64.b64encode(encode_image("WEBP", (500, 400))).decode()

    image = fetch_image(f"data:image/webp;base64,{payload}", PUBLIC)

    assert image.size == (500, 400)


@pytest.mark.parametrize(
    "url",
    [
        "data:image/png;base64,@@not-base64@@",
        "data:image/png;base64,iVBORw0KGgo",  # bad padding
        "data:text/plain;base64,aGVsbG8=",
        "data:image/png,rawbytes",
    ],
)
def test_a_malformed_data_uri_is_refused(url: str) -> None:
    with pytest.raises(InvalidImage, match=r"image_urls\[0\]: .*data URI"):
        fetch_image(url, PUBLIC)


def test_a_data_uri_of_something_else_is_refused() -> None:
    with pytest.raises(InvalidImage, match="not a supported image"):
        fetch_image("data:image/png;base64," + base64.b64encode(b"plain text").decode(), PUBLIC)


def test_a_data_uri_over_max_bytes_is_refused() -> None:
    payload = base64.b64encode(encode_image("BMP", (400, 400))).decode()

    with pytest.raises(InvalidImage, match="larger than 1000 bytes"):
        fetch_image(f"data:image/bmp;base64,{payload}", FetchPolicy(max_bytes=1000))


@pytest.mark.parametrize("url", ["file:///etc/passwd", "ftp://example.com/a.png", "/a.png"])
def test_other_schemes_are_refused(url: str) -> None:
    with pytest.raises(InvalidImage, match="only https://, http:// and data:image/"):
        fetch_image(url, PUBLIC)


# --- addresses -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("127.0.0.1", "127.0.0.1 is a loopback address"),
        ("10.0.0.1", "10.0.0.1 is a private address"),
        ("192.168.1.1", "192.168.1.1 is a private address"),
        ("169.254.169.254", "169.254.169.254 is a link-local address"),
        ("100.64.0.1", "100.64.0.1 is a shared"),
        ("224.0.0.1", "224.0.0.1 is a multicast address"),
        ("0.0.0.0", "0.0.0.0 is the unspecified address"),
        ("[::1]", "::1 is a loopback address"),
        ("[fd00::1]", "fd00::1 is a private address"),
        ("[::ffff:10.0.0.1]", r"::ffff:10.0.0.1 is a private address \(10.0.0.1, carried inside"),
        ("localhost", "localhost resolves to .*, which is a loopback address"),
    ],
)
def test_private_hosts_are_refused_without_connecting(
    loopback_only: list[str], image_server: ImageServer, host: str, reason: str
) -> None:
    image_server.serve("/a.png", encode_image("PNG", (400, 400)))
    url = f"http://{host}:{image_server.port}/a.png"

    with pytest.raises(InvalidImage, match=rf"image_urls\[0\]: {reason}"):
        fetch_image(url, PUBLIC)

    assert loopback_only == [], "a refused address is never connected to"
    assert image_server.hits == []


def test_a_host_on_the_allowlist_is_fetched(
    loopback_only: list[str], image_server: ImageServer
) -> None:
    url = image_server.serve("/a.png", encode_image("PNG", (400, 400)))

    image = fetch_image(
        url, FetchPolicy(max_bytes=MAX_IMAGE_BYTES, allowed_hosts=frozenset({"127.0.0.1"}))
    )

    assert image.size == (400, 400)


@pytest.mark.parametrize(
    ("target", "reason"),
    [
        ("http://10.0.0.1/secret.png", "10.0.0.1 is a private address"),
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is a link-local"),
        ("http://localhost:{port}/a.png", "localhost resolves to"),
    ],
)
def test_a_redirect_to_a_private_host_is_refused(
    loopback_only: list[str], image_server: ImageServer, target: str, reason: str
) -> None:
    image_server.serve("/a.png", encode_image("PNG", (400, 400)))
    url = image_server.redirect("/r", target.format(port=image_server.port))

    with pytest.raises(InvalidImage, match=reason):
        fetch_image(
            url, FetchPolicy(max_bytes=MAX_IMAGE_BYTES, allowed_hosts=frozenset({"127.0.0.1"}))
        )

    assert loopback_only == ["127.0.0.1"], "only the allowed first hop was connected to"
    assert image_server.hits == ["/r"]


def test_a_name_with_any_private_answer_is_refused(
    loopback_only: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_resolver(monkeypatch, {"mixed.test": [["8.8.8.8", "10.1.2.3"]]})

    with pytest.raises(InvalidImage, match=r"mixed\.test resolves to 10\.1\.2\.3"):
        fetch_image("http://mixed.test/a.png", PUBLIC)

    assert loopback_only == []


def test_the_connection_goes_to_the_address_resolved_once(
    loopback_only: list[str], image_server: ImageServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # DNS rebinding: the first answer is the one checked, later answers point inside. The
    # fetcher must resolve once and connect to that address, never resolve again.
    lookups = fake_resolver(monkeypatch, {"rebind.test": [["127.0.0.1"], ["10.9.9.9"]]})
    image_server.serve("/a.png", encode_image("PNG", (400, 400)))
    policy = FetchPolicy(max_bytes=MAX_IMAGE_BYTES, allowed_hosts=frozenset({"rebind.test"}))

    image = fetch_image(image_server.url("/a.png", host="rebind.test"), policy)

    assert image.size == (400, 400)
    assert lookups == ["rebind.test"]
    assert loopback_only == ["127.0.0.1"]
    assert image_server.host_headers == [f"rebind.test:{image_server.port}"]


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.2",
        "10.255.0.1",
        "172.16.5.4",
        "192.168.0.1",
        "169.254.169.254",
        "100.100.100.200",
        "0.0.0.0",
        "255.255.255.255",
        "240.0.0.1",
        "192.0.2.1",
        "::1",
        "::",
        "fe80::1",
        "fc00::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "2002:a00:1::",  # 6to4 for 10.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 for 169.254.169.254
    ],
)
def test_check_address_refuses_non_public_addresses(address: str) -> None:
    with pytest.raises(InvalidImage, match="images are only fetched from public addresses"):
        check_address(address, PUBLIC)


@pytest.mark.parametrize("address", ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"])
def test_check_address_allows_public_addresses(address: str) -> None:
    check_address(address, PUBLIC)
    check_address(ipaddress.ip_address(address), PUBLIC)


def test_check_address_trusts_allowed_hosts_and_the_operator_switch() -> None:
    check_address(
        "10.0.0.1",
        FetchPolicy(max_bytes=MAX_IMAGE_BYTES, allowed_hosts=frozenset({"files.internal"})),
        host="files.internal",
    )
    check_address("10.0.0.1", OPEN)


# --- fitting -------------------------------------------------------------------------------


def banded(width: int, height: int, *, vertical: bool) -> Image.Image:
    """Green, with a 100 px red band at the start and a blue one at the end."""
    image = Image.new("RGB", (width, height), (0, 255, 0))
    if vertical:
        image.paste((255, 0, 0), (0, 0, width, 100))
        image.paste((0, 0, 255), (0, height - 100, width, height))
    else:
        image.paste((255, 0, 0), (0, 0, 100, height))
        image.paste((0, 0, 255), (width - 100, 0, width, height))
    return image


def test_fit_crops_the_sides_of_a_wide_image() -> None:
    fitted = fit_image(banded(1600, 900, vertical=False), 450, 450)

    assert fitted.shape == (450, 450, 3)
    assert fitted.dtype == np.uint8
    assert fitted[..., 0].max() < 10 and fitted[..., 2].max() < 10, "both bands cropped off"
    assert fitted[..., 1].min() > 245


def test_fit_crops_top_and_bottom_of_a_tall_image() -> None:
    fitted = fit_image(banded(900, 1600, vertical=True), 864, 496)

    assert fitted.shape == (496, 864, 3)
    assert fitted[..., 0].max() < 10 and fitted[..., 2].max() < 10


def test_fit_keeps_everything_at_the_same_ratio() -> None:
    fitted = fit_image(banded(1600, 900, vertical=False), 1280, 720)

    assert fitted.shape == (720, 1280, 3)
    assert tuple(fitted[360, 10]) == (255, 0, 0)
    assert tuple(fitted[360, 1270]) == (0, 0, 255)
    assert tuple(fitted[360, 640]) == (0, 255, 0)


def test_fit_converts_to_rgb() -> None:
    fitted = fit_image(Image.new("L", (500, 500), 77), 300, 200)

    assert fitted.shape == (200, 300, 3)
    assert (fitted == 77).all()


# --- https ---------------------------------------------------------------------------------


def test_https_is_pinned_yet_verified_against_the_host_name(
    loopback_only: list[str],
    tls_image_server: ImageServer,
    tls_certificate: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The connection goes to the checked address, while SNI and the certificate check use
    # the name in the URL: the certificate names only images.test.
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_certificate[0]))
    lookups = fake_resolver(monkeypatch, {"images.test": [["127.0.0.1"], ["10.9.9.9"]]})
    tls_image_server.serve("/a.png", encode_image("PNG", (400, 400)))
    policy = FetchPolicy(max_bytes=MAX_IMAGE_BYTES, allowed_hosts=frozenset({"images.test"}))

    image = fetch_image(tls_image_server.url("/a.png", host="images.test"), policy)

    assert image.size == (400, 400)
    assert lookups == ["images.test"]
    assert loopback_only == ["127.0.0.1"]


def test_https_with_a_certificate_for_another_name_is_refused(
    tls_image_server: ImageServer,
    tls_certificate: tuple[Path, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_certificate[0]))
    url = tls_image_server.serve("/a.png", encode_image("PNG", (400, 400)))  # by IP

    with pytest.raises(InvalidImage, match="certificate verify failed"):
        fetch_image(url, OPEN)


def test_https_with_an_untrusted_certificate_is_refused(
    tls_image_server: ImageServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_resolver(monkeypatch, {"images.test": [["127.0.0.1"]]})
    tls_image_server.serve("/a.png", encode_image("PNG", (400, 400)))

    with pytest.raises(InvalidImage, match="certificate verify failed"):
        fetch_image(tls_image_server.url("/a.png", host="images.test"), OPEN)


def test_a_burst_of_threads_shares_one_tls_context(
    tls_certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A thousand downloads start at once when a thousand tasks end together: building a
    # context costs about 30 ms of CPU, so they must all get the one built first.
    roots = tmp_path / "roots.pem"  # a bundle no context was built for yet
    roots.write_bytes(tls_certificate[0].read_bytes())
    monkeypatch.setenv("SSL_CERT_FILE", str(roots))
    start = threading.Barrier(16)

    def context() -> ssl.SSLContext:
        start.wait()
        return shared_ssl_context()

    with ThreadPoolExecutor(16) as pool:
        contexts = list(pool.map(lambda _: context(), range(16)))
    assert len({id(c) for c in contexts}) == 1
    assert contexts[0] is shared_ssl_context()
