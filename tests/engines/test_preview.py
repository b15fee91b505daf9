"""The preview engine: the output contract, determinism, scenes, images, cancel, subtitles.

Every test renders real MP4s through the real writer and reads them back with the probe.
The 54-size sweep uses the "superfast" preset (the fastest that still writes H.264 High)
so that the whole file stays around a minute or two on two cores.
"""

from __future__ import annotations

import dataclasses
import itertools
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw

from runbase.core.seedance import (
    ASPECT_RATIOS,
    DURATIONS,
    RESOLUTIONS,
)
from runbase.engines.base import GenerationRequest, GenerationResult
from runbase.engines.preview import PreviewEngine
from runbase.engines.preview.frames import Overlays, film_scene, plan_camera
from runbase.engines.preview.scene import CAMERA_MOVES, describe_scene
from runbase.engines.preview.soundtrack import SpokenLine
from runbase.errors import GenerationFailed, RunCanceled
from runbase.media.images import fit_image
from runbase.media.probe import probe, read_audio, read_frames
from support import RecordingSink, engine_request

needs_espeak = pytest.mark.skipif(
    shutil.which("espeak-ng") is None, reason="speech needs espeak-ng"
)


def make_request(
    scratch: Path,
    prompt: str,
    *,
    seed: int = 1,
    images: Sequence[Image.Image] = (),
    **fields: Any,
) -> GenerationRequest:
    """A request as the worker builds it: validated input, contract geometry."""
    return engine_request(scratch, {"prompt": prompt, **fields}, seed=seed, images=images)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def photo(width: int, height: int, seed: int) -> Image.Image:
    """A photo-like test image: soft gradients, shapes and a little texture."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    base = np.stack(
        [
            120 + 80 * np.sin(xs / 90 + seed),
            100 + 60 * np.cos(ys / 70),
            140 + 50 * np.sin((xs + ys) / 120),
        ],
        axis=-1,
    )
    base += rng.normal(0, 3, base.shape).astype(np.float32)
    image = Image.fromarray(np.clip(base, 0, 255).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(image)
    for _ in range(6):
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        r = rng.uniform(20, 120)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        draw.ellipse((x - r, y - r, x + r, y + r), fill=colour)
    return image


# --- the output contract over every size --------------------------------------------------

_PROMPTS = (
    "abstract shapes",
    "a city skyline at night",
    "waves on the sea at sunset",
    "a pine forest at dawn",
    'a perfume bottle on a table in a studio. "Hello"',
    "clouds in a blue sky",
)
_COMBINATIONS = list(itertools.product(RESOLUTIONS, ASPECT_RATIOS, DURATIONS))


@pytest.fixture(scope="module")
def quick_engine() -> PreviewEngine:
    """Fast settings for the sweep: superfast is the fastest preset that stays High."""
    engine = PreviewEngine(preset="superfast", crf=40)
    engine.setup()
    return engine


@needs_espeak
@pytest.mark.parametrize(("resolution", "ratio", "duration"), _COMBINATIONS)
def test_every_size_meets_the_output_contract(
    quick_engine: PreviewEngine, tmp_path: Path, resolution: str, ratio: str, duration: str
) -> None:
    """All 54 sizes x durations; a fixed camera keeps the encoder's work small, and a third
    of them carry audio (every resolution and duration gets both)."""
    index = _COMBINATIONS.index((resolution, ratio, duration))
    with_audio = (ASPECT_RATIOS.index(ratio) + DURATIONS.index(duration)) % 3 == 0
    request = make_request(
        tmp_path,
        _PROMPTS[index % len(_PROMPTS)],
        aspect_ratio=ratio,
        resolution=resolution,
        duration=duration,
        generate_audio=with_audio,
        camera_fixed=True,
    )
    result = quick_engine.generate(request, RecordingSink())
    assert_contract(result, request)


def assert_contract(result: GenerationResult, request: GenerationRequest) -> None:
    assert result.files == (request.scratch_dir / "output.mp4",)
    info = probe(result.files[0])
    assert info.video is not None
    assert (info.video.width, info.video.height) == (request.width, request.height)
    assert info.video.num_frames == 24 * int(request.input["duration"]) + 1
    assert info.video.fps == 24
    assert (info.video.codec, info.video.profile, info.video.pix_fmt) == ("h264", "High", "yuv420p")
    assert info.is_faststart
    if request.audio:
        assert len(info.audio) == 1
        track = info.audio[0]
        assert (track.codec, track.profile, track.sample_rate, track.channels) == (
            "aac",
            "LC",
            48_000,
            2,
        )
        assert track.duration == pytest.approx(info.video.duration, abs=0.03)
    else:
        assert info.audio == ()
    assert result.metadata["preview"] is True


@needs_espeak
@pytest.mark.slow
def test_full_size_1080p_12_seconds_with_audio(tmp_path: Path) -> None:
    request = make_request(
        tmp_path,
        'A rainy city street at night, neon signs, pan right. "Where are you going?" she asks.',
        resolution="1080p",
        duration="12",
    )
    sink = RecordingSink()
    result = PreviewEngine().generate(request, sink)
    assert_contract(result, request)
    assert result.metadata["dialogue"][0]["text"] == "Where are you going?"


# --- determinism, progress, cancel ---------------------------------------------------------


def render(
    tmp_path: Path, name: str, prompt: str, **fields: Any
) -> tuple[GenerationResult, RecordingSink]:
    request = make_request(tmp_path / name, prompt, resolution="480p", **fields)
    sink = RecordingSink()
    return PreviewEngine(preset="superfast").generate(request, sink), sink


@needs_espeak
def test_same_seed_gives_identical_frames_and_audio(tmp_path: Path) -> None:
    prompt = 'Waves on the ocean at sunset. "The tide is coming in."'
    first, _ = render(tmp_path, "a", prompt, seed=42)
    second, _ = render(tmp_path, "b", prompt, seed=42)
    other, _ = render(tmp_path, "c", prompt, seed=43)
    indices = [*range(0, 97, 8), -1]
    for mine, again in zip(
        read_frames(first.files[0], indices), read_frames(second.files[0], indices), strict=True
    ):
        assert np.array_equal(mine, again)
    assert np.array_equal(read_audio(first.files[0])[0], read_audio(second.files[0])[0])
    middle = read_frames(first.files[0], [48])[0]
    assert not np.array_equal(middle, read_frames(other.files[0], [48])[0])
    assert first.metadata == second.metadata


def test_progress_is_monotonic_and_reaches_one(tmp_path: Path) -> None:
    result, sink = render(tmp_path, "p", "a forest at night", generate_audio=False)
    assert sink.fractions[0] == 0.0
    assert sink.fractions[-1] == 1.0
    assert sink.fractions == sorted(sink.fractions)
    assert 10 <= len(sink.fractions) <= 25  # every ~5%, not every frame
    assert result.metadata["dialogue"] == []


def test_cancel_mid_render_raises_within_a_second(tmp_path: Path) -> None:
    request = make_request(
        tmp_path, "a city skyline, zoom in", resolution="720p", duration="12", generate_audio=False
    )
    sink = RecordingSink(stop_at=0.3)
    with pytest.raises(RunCanceled):
        PreviewEngine().generate(request, sink)
    raised = time.monotonic()
    assert sink.stopped_at is not None
    assert raised - sink.stopped_at < 1.0
    assert max(sink.fractions) < 0.5
    assert not (tmp_path / "output.mp4").exists()
    assert not [p for p in tmp_path.iterdir() if p.suffix == ".partial"]


def test_cancel_before_start(tmp_path: Path) -> None:
    request = make_request(tmp_path, "the sea", generate_audio=False)
    with pytest.raises(RunCanceled):
        PreviewEngine().generate(request, RecordingSink(stop_at=0.0))


def test_writer_errors_become_generation_failed(tmp_path: Path) -> None:
    request = make_request(tmp_path, "the sea", resolution="480p", generate_audio=False)
    odd = dataclasses.replace(request, width=865)  # yuv420p needs even sizes
    with pytest.raises(GenerationFailed):
        PreviewEngine().generate(odd, RecordingSink())


def test_ultrafast_is_refused() -> None:
    with pytest.raises(ValueError, match="preset"):
        PreviewEngine(preset="ultrafast")


# --- images ---------------------------------------------------------------------------------


@pytest.mark.parametrize("camera", ["zoom in", "pan left", "zoom out", "static camera"])
def test_one_image_starts_on_the_fitted_image(tmp_path: Path, camera: str) -> None:
    image = photo(1000, 760, seed=1)
    request = make_request(
        tmp_path,
        f"the scene comes alive, {camera}",
        images=[image],
        aspect_ratio="16:9",
        resolution="720p",
        generate_audio=False,
    )
    result = PreviewEngine(preset="superfast").generate(request, RecordingSink())
    first, middle = read_frames(result.files[0], [0, 48])
    fitted = fit_image(image, request.width, request.height)
    assert psnr(first, fitted) > 30
    if camera != "static camera":
        assert psnr(middle, fitted) < 30  # the camera moved


@pytest.mark.parametrize(
    "images",
    [
        pytest.param((photo(900, 1400, seed=2), photo(700, 1300, seed=3)), id="photos"),
        pytest.param(
            (
                Image.new("RGB", (640, 960), (18, 20, 30)),
                Image.new("RGB", (640, 960), (240, 236, 230)),
            ),
            id="flat-dark-and-light",  # worst case for the PREVIEW mark
        ),
    ],
)
def test_two_images_are_the_first_and_last_frames(
    tmp_path: Path, images: tuple[Image.Image, Image.Image]
) -> None:
    request = make_request(
        tmp_path,
        "a slow transformation",
        images=images,
        aspect_ratio="9:16",
        resolution="480p",
        generate_audio=False,
    )
    result = PreviewEngine(preset="superfast").generate(request, RecordingSink())
    first, last = read_frames(result.files[0], [0, -1])
    assert psnr(first, fit_image(images[0], request.width, request.height)) > 30
    assert psnr(last, fit_image(images[1], request.width, request.height)) > 30
    assert result.metadata["images"] == 2


# --- subtitles and the mark ---------------------------------------------------------------


@needs_espeak
def test_subtitles_show_while_a_line_is_spoken(tmp_path: Path) -> None:
    prompt = 'A quiet office. "Good morning, everyone."'
    spoken, _ = render(tmp_path, "on", prompt, generate_audio=True, camera_fixed=True)
    silent, _ = render(tmp_path, "off", prompt, generate_audio=False, camera_fixed=True)
    (line,) = spoken.metadata["dialogue"]
    assert silent.metadata["dialogue"] == []  # no audio: nothing spoken, nothing captioned
    during = round((line["start"] + line["end"]) / 2 * 24)
    with_text, without_text = (read_frames(r.files[0], [during])[0] for r in (spoken, silent))
    height, width, _ = with_text.shape
    bottom = (slice(int(height * 0.75), height), slice(width // 4, 3 * width // 4))
    top = (slice(0, height // 2), slice(0, width))
    diff = np.abs(with_text.astype(np.int16) - without_text.astype(np.int16))
    assert diff[bottom].mean() > 8
    assert diff[top].mean() < 1.5


def test_overlays_mark_every_frame_but_caption_neither_end() -> None:
    scene = describe_scene("clouds in the sky", seed=1, camera_fixed=True)
    film = film_scene(scene, 640, 360, 25, 24)
    line = SpokenLine("A line spoken over the whole clip", "en", 0.0, 10.0)
    captioned = Overlays.build(640, 360, 25, 24, [line])
    bare = Overlays.build(640, 360, 25, 24, [])
    for index in (0, 12, 24):
        plain = np.asarray(film.picture(index))
        marked = bare.finish(film.picture(index), index)
        assert not np.array_equal(plain[:40, -140:], marked[:40, -140:])  # the PREVIEW mark
        subtitled = captioned.finish(film.picture(index), index)
        assert np.array_equal(subtitled, marked) == (index in (0, 24))


# --- reading the prompt ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("prompt", "kind"),
    [
        ("Clouds drifting across the sky", "sky"),
        ("Waves crash on a sandy beach", "sea"),
        ("A busy city street with traffic", "city"),
        ("Sunlight through a pine forest", "forest"),
        ("A perfume bottle on a table in a studio", "interior"),
        ("A cosy kitchen in the morning", "interior"),
        ("Swirling colours", "abstract"),
        ("夜の海に月が昇る", "sea"),
        ("城市的夜晚", "city"),
        ("森林里的小路", "forest"),
    ],
)
def test_scene_kind_from_keywords(prompt: str, kind: str) -> None:
    assert describe_scene(prompt, seed=0, camera_fixed=False).kind == kind


@pytest.mark.parametrize(
    ("prompt", "camera"),
    [
        ("The camera pans left over the bay", "pan_left"),
        ("slowly panning to the right", "pan_right"),
        ("tilt up to the stars", "tilt_up"),
        ("the camera tilts down", "tilt_down"),
        ("zoom in on the face", "zoom_in"),
        ("zooming out to reveal the city", "zoom_out"),
        ("dolly in towards the door", "dolly_in"),
        ("pull back from the scene", "dolly_out"),
        ("the camera orbits the statue", "orbit"),
        ("static shot of a lake", "static"),
        ("a lake, no camera words", "zoom_in"),
        ("zoom out, then pan left", "zoom_out"),  # the first move named wins
        ("镜头推进", "dolly_in"),
    ],
)
def test_camera_from_keywords(prompt: str, camera: str) -> None:
    assert describe_scene(prompt, seed=0, camera_fixed=False).camera == camera


def test_camera_fixed_forces_static() -> None:
    assert describe_scene("pan left fast", seed=0, camera_fixed=True).camera == "static"


def test_time_of_day_and_colours() -> None:
    night = describe_scene("a moonlit harbour", seed=0, camera_fixed=False)
    assert (night.kind, night.time_of_day) == ("sea", "night")
    sunset = describe_scene("golden hour over the ocean", seed=0, camera_fixed=False)
    assert sunset.time_of_day == "sunset"
    grey = describe_scene("a black and white city", seed=0, camera_fixed=False)
    assert "monochrome" in grey.colours
    assert all(len(set(c)) == 1 for c in vars(grey.palette).values())
    red = describe_scene("a red sky", seed=0, camera_fixed=False)
    assert red.palette.accent[0] > red.palette.accent[2]


def test_scene_is_deterministic_per_prompt_and_seed() -> None:
    a = describe_scene("the sea", seed=5, camera_fixed=False)
    assert a == describe_scene("the sea", seed=5, camera_fixed=False)
    b = describe_scene("the sea", seed=6, camera_fixed=False)
    assert (a.kind, a.camera) == (b.kind, b.camera)
    assert a.layout_seed != b.layout_seed


@pytest.mark.parametrize("move", CAMERA_MOVES)
@pytest.mark.parametrize("size", [(864, 496), (496, 864), (2206, 946)])
def test_camera_box_stays_inside_the_canvas(move: str, size: tuple[int, int]) -> None:
    width, height = size
    path = plan_camera(move, width, height, 12.0)
    canvas_w, canvas_h = path.canvas
    for step in range(11):
        view = path.view_at(step / 10)
        assert 0 < view.scale <= 1.0
        assert view.x >= -1e-6 and view.y >= -1e-6
        assert view.x + width / view.scale <= canvas_w + 1e-6
        assert view.y + height / view.scale <= canvas_h + 1e-6
