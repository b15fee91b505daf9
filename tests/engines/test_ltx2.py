"""The LTX-2 engine, through diffusers' real LTX-2 pipelines with tiny random weights.

The pipelines are built in memory by ltx2_tiny.py, so nothing touches the Hugging Face
Hub; `max_generation_side` makes the engine generate at 64-128 px and resize to the exact
contract size, so every MP4 is checked at its real geometry. Pixel values of a random model
mean nothing: tests check geometry, frame counts, audio tracks, which pipeline ran,
progress and cancellation. Set-up is test_ltx2_setup.py; what the model is given (images,
keyframe positions, flags) test_ltx2_conditioning.py.
"""

from __future__ import annotations

import dataclasses
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # any hub access would fail loudly

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from support import RecordingSink

pytest.importorskip("diffusers", reason="the LTX-2 engine needs the ltx2 extra")

from ltx2_tiny import (
    assert_contract_mp4,
    gradient,
    make_request,
    tiny_engine,
    tiny_upsampler,
)

from runbase.core.seedance import SIZES
from runbase.engines.ltx2 import LTX2Engine, LTX2Options, generation_size
from runbase.errors import RunCanceled

RATIOS = ("16:9", "9:16", "4:3", "3:4", "1:1", "21:9")

# ---- tiny pipelines ----------------------------------------------------------------------


@pytest.fixture
def vae_encodes(tiny_pipeline: Any) -> Iterator[list[tuple[int, ...]]]:
    """Shapes of the images the video VAE encoded: conditioning frames, one per image."""
    shapes: list[tuple[int, ...]] = []
    handle = tiny_pipeline.vae.encoder.register_forward_pre_hook(
        lambda module, args: shapes.append(tuple(args[0].shape))
    )
    yield shapes
    handle.remove()


# ---- sizes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("resolution", "ratio"), sorted(SIZES))
def test_generation_size_is_a_multiple_of_64_near_the_output(resolution: str, ratio: str) -> None:
    width, height = SIZES[(resolution, ratio)]
    gen_w, gen_h = generation_size(width, height)
    assert gen_w % 64 == 0 and gen_h % 64 == 0
    assert abs(gen_w / gen_h - width / height) / (width / height) < 0.03
    assert abs(gen_w - width) <= 64 and abs(gen_h - height) <= 64
    small_w, small_h = generation_size(width, height, max_side=128)
    assert small_w % 64 == 0 and small_h % 64 == 0 and max(small_w, small_h) <= 128


def test_plan_rounds_frames_up_and_picks_the_recipe(tmp_path: Path, tiny_pipeline: Any) -> None:
    engine = LTX2Engine(LTX2Options(device="cpu"), pipeline=tiny_pipeline)
    request = make_request(tmp_path, resolution="1080p", duration="12")
    plan = engine.plan(request)
    assert (plan.width, plan.height, plan.num_frames) == (1920, 1088, 289)
    assert plan.tiled_decode
    assert not plan.two_stage  # "auto", but this engine has no latent upsampler
    with_upsampler = LTX2Engine(
        LTX2Options(device="cpu"), pipeline=tiny_pipeline, upsampler=object()
    )
    assert with_upsampler.plan(request).two_stage
    assert with_upsampler.plan(request).stages == ((960, 544, 8), (1920, 1088, 3))
    small = with_upsampler.plan(make_request(tmp_path, resolution="720p"))
    assert not small.two_stage and not small.tiled_decode
    odd = dataclasses.replace(request, num_frames=100)
    assert engine.plan(odd).num_frames == 105


@pytest.mark.parametrize(
    ("resolution", "duration", "tiled"),
    [("480p", "12", False), ("720p", "4", False), ("720p", "8", True), ("720p", "12", True)],
)
def test_auto_tiling_counts_frames_as_well_as_pixels(
    tmp_path: Path, resolution: str, duration: str, tiled: bool
) -> None:
    """A long 720p clip decodes as many pixels as a short 1080p one: both are tiled."""
    request = make_request(tmp_path, resolution=resolution, duration=duration)
    assert LTX2Engine(LTX2Options(device="cpu")).plan(request).tiled_decode is tiled


def test_tiled_decoding_runs_frame_by_frame_and_keeps_every_frame(
    tmp_path: Path, tiny_pipeline: Any
) -> None:
    engine = tiny_engine(tiny_pipeline, vae_tiling="on", max_generation_side=64)
    request = make_request(tmp_path, aspect_ratio="1:1")
    result = engine.generate(request, RecordingSink())
    # 97 frames (13 latent frames) decoded in runs of 64 overlapping by 24, every one kept.
    assert_contract_mp4(result.files[0], request)
    assert result.metadata["tiled_decode"]
    assert tiny_pipeline.vae.use_tiling and tiny_pipeline.vae.use_framewise_decoding
    engine = tiny_engine(tiny_pipeline, vae_tiling="off", max_generation_side=64)
    engine.generate(make_request(tmp_path / "off", aspect_ratio="1:1"), RecordingSink())
    assert not tiny_pipeline.vae.use_tiling and not tiny_pipeline.vae.use_framewise_decoding


# ---- generation through the media layer ----------------------------------------------------


def test_text_to_video_with_audio(tmp_path: Path, tiny_pipeline: Any, vae_encodes: list) -> None:
    prompts: list[str] = []
    tokenizer = tiny_pipeline.tokenizer
    hook = tiny_pipeline.text_encoder.register_forward_pre_hook(
        lambda module, args, kwargs: prompts.append(
            tokenizer.decode(kwargs["input_ids"][0], skip_special_tokens=True).replace("▁", " ")
        ),
        with_kwargs=True,
    )
    try:
        engine = tiny_engine(tiny_pipeline)
        request = make_request(tmp_path)
        sink = RecordingSink()
        result = engine.generate(request, sink)
    finally:
        hook.remove()
    assert result.files == (tmp_path / "output.mp4",)
    assert_contract_mp4(result.files[0], request)
    assert result.metadata["conditioning"] == "text"
    assert result.metadata["generation_size"] == [128, 64]
    assert result.metadata["steps"] == 8 and result.metadata["distilled"]
    assert result.metadata["speed"]["fp8"] == "off"
    assert vae_encodes == []  # text to video encodes no image
    assert any('"Hello there, friend."' in prompt for prompt in prompts), prompts
    # Progress: 8 denoising steps, then encoding, monotonic, ending at 1.0.
    assert sink.messages.count("denoising") == 8
    assert sink.fractions == sorted(sink.fractions) and sink.fractions[-1] == 1.0
    assert any("resized to 864x496" in line for line in sink.logs)


def test_silent_request_has_no_audio_track(tmp_path: Path, tiny_pipeline: Any) -> None:
    # A given pipeline keeps its dtype (float32 here); FP8 asks for bfloat16 options.
    engine = tiny_engine(tiny_pipeline, fp8=True, dtype="bfloat16")
    request = make_request(tmp_path, generate_audio=False, aspect_ratio="1:1")
    result = engine.generate(request, RecordingSink())
    assert_contract_mp4(result.files[0], request)
    # FP8 is asked for, but a CPU has none: the engine says so and runs without it.
    assert result.metadata["speed"]["fp8"] == "unavailable: FP8 needs a CUDA GPU"


@pytest.mark.parametrize("ratio", RATIOS)
def test_every_aspect_ratio_gives_the_exact_size(
    tmp_path: Path, tiny_pipeline: Any, ratio: str
) -> None:
    engine = tiny_engine(tiny_pipeline)
    request = make_request(tmp_path, aspect_ratio=ratio, generate_audio=ratio in ("9:16", "21:9"))
    assert_contract_mp4(engine.generate(request, RecordingSink()).files[0], request)


def test_one_image_conditions_the_first_frame(
    tmp_path: Path, tiny_pipeline: Any, vae_encodes: list
) -> None:
    engine = tiny_engine(tiny_pipeline)
    image = gradient(900, 600, hue=30)  # 3:2, fitted to the 16:9 generation by a crop
    request = make_request(tmp_path, images=(image,), image_urls=["https://example.com/a.png"])
    result = engine.generate(request, RecordingSink())
    assert_contract_mp4(result.files[0], request)
    assert result.metadata["conditioning"] == "first_frame"
    # The image-to-video pipeline encoded one frame at the generation size.
    assert vae_encodes == [(1, 3, 1, 64, 128)]


def test_two_images_condition_the_first_and_last_frames(
    tmp_path: Path, tiny_pipeline: Any, vae_encodes: list
) -> None:
    engine = tiny_engine(tiny_pipeline)
    images = (gradient(640, 640, hue=0), gradient(800, 640, hue=128))
    request = make_request(
        tmp_path,
        images=images,
        image_urls=["https://example.com/a.png", "https://example.com/b.png"],
        aspect_ratio="4:3",
        generate_audio=False,
    )
    result = engine.generate(request, RecordingSink())
    assert_contract_mp4(result.files[0], request)
    assert result.metadata["conditioning"] == "first_last"
    # The condition pipeline encoded both images (index 0 and index -1), each fitted.
    assert vae_encodes == [(1, 3, 1, 128, 128)] * 2


@pytest.mark.parametrize("count", [0, 2])
def test_two_stage_recipe_upsamples_and_refines(
    tmp_path: Path, tiny_pipeline: Any, vae_encodes: list, count: int
) -> None:
    engine = tiny_engine(tiny_pipeline, tiny_upsampler(), two_stage="on")
    images = (gradient(700, 300, hue=10), gradient(700, 300, hue=90))[:count]
    urls = [f"https://example.com/{n}.png" for n in range(count)]
    request = make_request(
        tmp_path, aspect_ratio="21:9", images=images, image_urls=urls, generate_audio=count == 0
    )
    sink = RecordingSink()
    result = engine.generate(request, sink)
    assert_contract_mp4(result.files[0], request)
    assert result.metadata["two_stage"] and result.metadata["steps"] == 8 + 3
    assert sink.messages.count("denoising") == 11 and "upsampling" in sink.messages
    # Images are fitted to each stage's size: half size first, then the full 128x64 (one
    # image: test_ltx2_conditioning.py).
    assert vae_encodes == [(1, 3, 1, 32, 64)] * count + [(1, 3, 1, 64, 128)] * count


def test_guided_schedule_and_seeds(tmp_path: Path, tiny_pipeline: Any) -> None:
    from runbase.media.probe import read_frames

    engine = tiny_engine(tiny_pipeline, distilled=False, steps=2)
    outputs = []
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        request = make_request(tmp_path / name, seed=seed, generate_audio=False)
        result = engine.generate(request, RecordingSink())
        assert result.metadata["steps"] == 2
        outputs.append(read_frames(result.files[0], [0, -1]))
    assert all(np.array_equal(a, b) for a, b in zip(outputs[0], outputs[1], strict=True))
    assert not np.array_equal(outputs[0][0], outputs[2][0])


def test_cancel_stops_between_steps_and_leaves_no_file(tmp_path: Path, tiny_pipeline: Any) -> None:
    engine = tiny_engine(tiny_pipeline)
    sink = RecordingSink(stop_at=0.3)
    with pytest.raises(RunCanceled):
        engine.generate(make_request(tmp_path), sink)
    assert sink.messages.count("denoising") < 8
    assert not (tmp_path / "output.mp4").exists()
    # The engine stays usable after a cancel.
    request = make_request(tmp_path, generate_audio=False)
    assert_contract_mp4(engine.generate(request, RecordingSink()).files[0], request)
