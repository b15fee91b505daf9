"""The LTX-2 engine, through diffusers' real LTX-2 pipelines with tiny random weights.

The pipelines are built in memory by ltx2_tiny.py, so nothing touches the Hugging Face
Hub; `max_generation_side` makes the engine generate at
64-128 px and resize to the exact contract size, so every MP4 is checked at its real
geometry. Pixel values of a random model mean nothing: tests check geometry, frame counts,
audio tracks, which pipeline ran, progress and cancellation.
"""

from __future__ import annotations

import dataclasses
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # any hub access would fail loudly

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from support import RecordingSink

pytest.importorskip("diffusers", reason="the LTX-2 engine needs the ltx2 extra")

import torch
from ltx2_tiny import (
    assert_contract_mp4,
    gradient,
    make_request,
    tiny_components,
    tiny_engine,
    tiny_upsampler,
)

from runbase.config import Settings
from runbase.core.seedance import MODEL_ID, SIZES
from runbase.engines import load_engine
from runbase.engines.ltx2 import LTX2Engine, LTX2Options, generation_size
from runbase.errors import EngineUnavailable, RunCanceled

RATIOS = ("16:9", "9:16", "4:3", "3:4", "1:1", "21:9")

# ---- tiny pipelines ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_pipeline() -> Any:
    from diffusers import LTX2Pipeline

    return LTX2Pipeline(**tiny_components())


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
    engine = tiny_engine(tiny_pipeline, fp8=True)
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


@pytest.mark.parametrize("count", [0, 1, 2])
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
    # Images are fitted to each stage's size: half size first, then the full 128x64 (the
    # image-to-video pipeline takes its refined first frame from the upsampled latents).
    refined = [(1, 3, 1, 64, 128)] * 2 if count == 2 else []
    assert vae_encodes == [(1, 3, 1, 32, 64)] * count + refined


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


# ---- set-up, settings, fallback ------------------------------------------------------------


def test_loads_weights_from_a_folder(tmp_path: Path, tiny_pipeline: Any) -> None:
    """The production path: from_pretrained on a local folder, offline, upsampler found."""
    folder = tmp_path / "ltx-2"
    tiny_pipeline.save_pretrained(folder)
    tiny_upsampler().save_pretrained(folder / "latent_upsampler")
    options = LTX2Options(
        model=str(folder),
        device="cpu",
        dtype="float32",
        max_generation_side=128,
        max_sequence_length=256,
        preset="superfast",
        two_stage="on",
    )
    engine = LTX2Engine(options)
    engine.setup()
    assert engine.speed["two_stage"] == "on"
    request = make_request(tmp_path / "run", generate_audio=False)
    result = engine.generate(request, RecordingSink())
    assert_contract_mp4(result.files[0], request)
    assert result.metadata["model"] == str(folder) and result.metadata["two_stage"]


def test_missing_weights_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    missing = tmp_path / "no-such-model"
    with pytest.raises(EngineUnavailable, match=r"no folder .*no-such-model"):
        LTX2Engine(LTX2Options(model=str(missing), device="cpu")).setup()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(EngineUnavailable) as caught:
        LTX2Engine(LTX2Options(model="Lightricks/Not-Cached", device="cpu")).setup()
    assert "'Lightricks/Not-Cached' is neither a local folder nor in the Hugging Face cache" in (
        str(caught.value)
    )
    assert "RUNBASE_ALLOW_DOWNLOADS" in str(caught.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EngineUnavailable, match=r"has no model_index\.json"):
        LTX2Engine(LTX2Options(model=str(empty), device="cpu")).setup()
    (empty / "model_index.json").write_text("{}")
    named = LTX2Options(model=str(empty), upsampler=str(tmp_path / "up"), device="cpu")
    with pytest.raises(EngineUnavailable, match=r"latent upsampler: no folder .*up"):
        LTX2Engine(named).setup()
    with pytest.raises(EngineUnavailable, match="no latent upsampler"):
        LTX2Engine(LTX2Options(device="cpu", two_stage="on"), pipeline=object()).setup()


def test_missing_libraries_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "diffusers", None)  # import diffusers now fails
    with pytest.raises(EngineUnavailable, match=r"diffusers is missing.*runbase\[ltx2\]"):
        LTX2Engine(LTX2Options(device="cpu")).setup()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_no_cuda_device_is_named(tmp_path: Path) -> None:
    with pytest.raises(EngineUnavailable) as caught:
        LTX2Engine(LTX2Options(model=str(tmp_path / "absent"))).setup()
    message = str(caught.value)
    assert "no CUDA device" in message and "absent" in message  # both problems at once


def test_settings_reach_the_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNBASE_LTX2_MODEL", "/models/ltx-2")
    monkeypatch.setenv("RUNBASE_LTX2_CPU_OFFLOAD", "model")
    monkeypatch.setenv("RUNBASE_LTX2_FP8", "true")
    monkeypatch.setenv("RUNBASE_LTX2_MAX_GENERATION_SIDE", "256")
    monkeypatch.setenv("RUNBASE_ALLOW_DOWNLOADS", "true")
    engine = load_engine("ltx2", Settings())
    assert isinstance(engine, LTX2Engine)
    options = engine.options
    assert (options.model, options.cpu_offload, options.fp8) == ("/models/ltx-2", "model", True)
    assert (options.max_generation_side, options.allow_downloads) == (256, True)
    assert (options.distilled, options.dtype, options.two_stage) == (True, "bfloat16", "auto")
    with pytest.raises(ValueError, match="cpu_offload must be one of off, model, sequential"):
        LTX2Options(cpu_offload="always")


def test_the_server_never_imports_torch() -> None:
    code = (
        "import sys\n"
        "from runbase.config import Settings\n"
        "from runbase.engines import load_engine\n"
        "load_engine('ltx2', Settings())\n"
        "assert 'torch' not in sys.modules and 'diffusers' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.slow
def test_server_falls_back_to_preview_without_weights(
    start_server: Callable[..., Any], tmp_path: Path
) -> None:
    server = start_server(engines=["ltx2", "preview"], ltx2_model=str(tmp_path / "no-weights"))
    key = server.new_key()
    with server.client(key) as client:
        response = client.post(
            "/api/v1/runs",
            json={
                "model": MODEL_ID,
                "input": {"prompt": "A quiet harbour at dawn.", "resolution": "480p"},
            },
        )
        assert response.status_code == 200, response.text
    run = server.wait_for_run(key, response.json()["id"], timeout=120)
    assert run["status"] == "succeeded", run
    assert run["backend"] == "preview"
    [note] = [line for line in run["logs"] if "'ltx2' unavailable" in line]
    assert "no-weights" in note
