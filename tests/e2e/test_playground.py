"""The web playground in real headless Chromium against a live server with the preview engine.

Chromium is Debian's (`make system-deps` installs it); Playwright drives it through
`executable_path`, so no browser is ever downloaded.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import Page, sync_playwright

from runbase.core import seedance
from support import LiveServer

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"
PROMPT = 'A lighthouse keeper looks out at the sea and says "storm tonight".'


def _usd(micros: int) -> str:
    return f"${micros / 1_000_000:.6f}".rstrip("0").rstrip(".")


def _fill_form(page: Page) -> None:
    page.fill("#prompt", PROMPT)
    page.click("label[for=resolution-480p]")
    page.click("label[for=duration-4]")
    page.click("label[for=ratio-16_9]")


def test_playground_generates_and_plays_a_video(
    start_server: Callable[..., LiveServer],
) -> None:
    assert shutil.which(CHROMIUM), "chromium is missing: run `make system-deps`"
    server = start_server(engines=["preview"])
    key = server.new_key()
    expected_price = seedance.price_micros(
        {"resolution": "480p", "aspect_ratio": "16:9", "duration": "4", "generate_audio": True}
    )
    requested: list[str] = []

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.on("request", lambda request: requested.append(request.url))
            for path in ("/playground", "/"):
                page.goto(server.base_url + path)
                page.wait_for_selector("body[data-ready=true]")

            _fill_form(page)
            # Without a key, the price comes from the catalog table; with one, the server
            # quotes it (POST /api/v1/runs/estimate). Both are the price charged.
            assert page.get_attribute("#price", "data-source") == "catalog"
            assert page.text_content("#price") == _usd(expected_price)
            page.fill("#api-key", key)
            page.wait_for_selector("#price[data-source=server]")
            assert page.text_content("#price") == _usd(expected_price)
            assert "864×496 · 97 frames · with audio" in (page.text_content("#price-detail") or "")
            snippet = page.text_content("#snippet") or ""
            assert '"resolution": "480p"' in snippet and "$RUNBASE_API_KEY" in snippet
            assert key not in snippet  # the snippets never carry the key
            page.click("[data-tab=python]")
            assert 'resolution="480p"' in (page.text_content("#snippet") or "")
            assert page.evaluate("localStorage.getItem('runbase.apiKey')") == key

            page.click("#run")
            # Until the video has loaded, or the page shows an error (then fail at once).
            page.wait_for_function(
                "() => { const v = document.querySelector('#video');"
                " return (!v.hidden && v.readyState >= 2 && v.duration > 0)"
                " || !document.querySelector('#form-error').hidden; }",
                timeout=120_000,
            )
            assert page.is_hidden("#form-error"), page.text_content("#form-error")
            duration = page.evaluate("document.querySelector('#video').duration")
            assert duration == pytest.approx(97 / 24, abs=0.05)
            assert page.text_content("#status") == "succeeded"
            href = page.get_attribute("#download", "href") or ""
            assert href.startswith(server.base_url + "/files/")

            # A frame from the middle of the clip makes a better picture than black.
            page.evaluate(
                "() => new Promise((resolve) => { const v = document.querySelector('#video');"
                " v.addEventListener('seeked', resolve, { once: true }); v.currentTime = 2.5; })"
            )
            page.wait_for_function("document.querySelector('#video-meta').textContent !== ''")
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "playground.png"))
        finally:
            browser.close()

    [run] = server.admin.runs()
    assert run.cost_micros == expected_price and run.input["resolution"] == "480p"
    # Offline by construction: the page asked nothing of any other host.
    assert all(url.startswith((server.base_url, "data:")) for url in requested), requested


def test_a_first_frame_of_another_ratio_is_flagged_before_the_run(
    start_server: Callable[..., LiveServer], tmp_path: Path
) -> None:
    server = start_server()
    key = server.new_key()
    photo = tmp_path / "photo.png"
    Image.new("RGB", (1024, 768), (90, 140, 200)).save(photo)  # 4:3
    creates: list[str] = []

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.on(
                "request",
                lambda r: (
                    creates.append(r.url)
                    if r.method == "POST" and r.url.endswith("/runs")
                    else None
                ),
            )
            page.goto(server.base_url + "/")
            page.wait_for_selector("body[data-ready=true]")
            page.fill("#api-key", key)
            _fill_form(page)  # 16:9
            assert page.is_hidden("#ratio-notice")
            page.set_input_files(".drop[data-slot='0'] input[type=file]", str(photo))
            page.wait_for_selector("#ratio-notice:not([hidden])")
            notice = page.text_content("#ratio-notice-text") or ""
            assert "1024×768" in notice and "4:3" in notice and "16:9" in notice
            assert page.text_content("#ratio-use") == "Use 4:3"

            # Generate does not create (nor charge) anything until the user has chosen.
            page.click("#run")
            page.wait_for_selector("#ratio-notice.attention")
            assert "aspect ratio" in (page.text_content("#form-error") or "")
            assert creates == []

            # Keeping 16:9 is a choice too; picking another ratio asks again.
            page.click("#ratio-keep")
            assert page.is_hidden("#ratio-notice")
            page.click("label[for=ratio-1_1]")
            assert page.is_visible("#ratio-notice")

            page.click("#ratio-use")
            assert page.is_hidden("#ratio-notice") and page.is_hidden("#form-error")
            assert page.is_checked("#ratio-4_3")
            assert "752×560" in (page.text_content("#price-detail") or "")
            page.click("#run")
            page.wait_for_selector("#status.succeeded, #form-error:not([hidden])", timeout=60_000)
            assert page.is_hidden("#form-error"), page.text_content("#form-error")
        finally:
            browser.close()

    assert len(creates) == 1
    [run] = server.admin.runs()
    assert run.input["aspect_ratio"] == "4:3" and len(run.input["image_urls"]) == 1
