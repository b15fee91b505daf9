"""What the LTX-2 model is given: where the images go, at which size, with which timestep
modulation, and how often the prompt is encoded.

The tiny random-weight model cannot show an image in its output, so these tests look at
the model's inputs, through hooks on the real diffusers modules: the positions of the
keyframe tokens the transformer attends to, the images the VAE encodes, the flags the
transformer is called with.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # any hub access would fail loudly

from collections.abc import Iterator
from pathlib import Path
from typing import Any

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

from runbase.media.images import fit_image

FPS = 24


@pytest.fixture
def transformer_calls(tiny_pipeline: Any) -> Iterator[list[dict[str, Any]]]:
    """The keyword arguments of every transformer call (tensors are the pipeline's own)."""
    calls: list[dict[str, Any]] = []
    handle = tiny_pipeline.transformer.register_forward_pre_hook(
        lambda module, args, kwargs: calls.append(dict(kwargs)), with_kwargs=True
    )
    yield calls
    handle.remove()


def test_the_last_image_is_placed_on_the_last_frame(
    tmp_path: Path, tiny_pipeline: Any, transformer_calls: list[dict[str, Any]]
) -> None:
    """diffusers reads index -1 as the last *latent* frame and puts its keyframe on pixel
    frame 89 of 97; the contract's last image belongs on frame 96, the clip's last."""
    engine = tiny_engine(tiny_pipeline, max_generation_side=64)
    images = (gradient(640, 480, hue=0), gradient(640, 480, hue=128))
    request = make_request(
        tmp_path,
        images=images,
        image_urls=["https://example.com/a.png", "https://example.com/b.png"],
        aspect_ratio="4:3",
        generate_audio=False,
    )
    result = engine.generate(request, RecordingSink())
    assert_contract_mp4(result.files[0], request)
    call = transformer_calls[0]
    grid = call["num_frames"] * call["height"] * call["width"]  # the clip's own tokens
    coords = call["video_coords"][0, 0]  # time [start, end) of every token, in seconds
    keyframe = coords[grid:]
    assert len(keyframe) == call["height"] * call["width"]  # one image's tokens, appended
    last = request.num_frames - 1
    assert torch.allclose(keyframe[:, 0], torch.tensor(last / FPS))
    assert torch.allclose(keyframe[:, 1], torch.tensor((last + 1) / FPS))
    # ... which is the last pixel frame of the clip's last latent frame.
    assert torch.isclose(coords[:grid, 1].max(), torch.tensor((last + 1) / FPS))


def test_stage_two_conditions_on_the_image_at_full_size(
    tmp_path: Path, tiny_pipeline: Any, transformer_calls: list[dict[str, Any]]
) -> None:
    """Two-stage image-to-video: stage 2 encodes the image again at the full size, and its
    first frame comes from that encoding, not from the upsampled half-size latents."""
    encoded: list[Any] = []
    handle = tiny_pipeline.vae.encoder.register_forward_pre_hook(
        lambda module, args: encoded.append(args[0].detach().clone())
    )
    try:
        engine = tiny_engine(tiny_pipeline, tiny_upsampler(), two_stage="on")
        image = gradient(700, 300, hue=10)
        request = make_request(
            tmp_path,
            aspect_ratio="21:9",
            images=(image,),
            image_urls=["https://example.com/0.png"],
            generate_audio=False,
        )
        result = engine.generate(request, RecordingSink())
    finally:
        handle.remove()
    assert_contract_mp4(result.files[0], request)
    assert [tuple(x.shape) for x in encoded] == [(1, 3, 1, 32, 64), (1, 3, 1, 64, 128)]
    # The second encoding is the image fitted to the full generation size (in [-1, 1],
    # after the model's own H.264 round trip of conditioning images).
    expected = torch.tensor(fit_image(image, 128, 64)).float().permute(2, 0, 1) / 127.5 - 1
    assert (encoded[1][0, :, 0] - expected).abs().mean() < 0.05
    # Stage 2's first-frame tokens are clean (mask 1: timestep 0), the image's latents.
    stage_two = [c for c in transformer_calls if c["width"] == 4]
    first_frame = stage_two[0]["timestep"][0, : 4 * 2]
    assert torch.all(first_frame == 0) and torch.all(stage_two[0]["timestep"][0, 8:] > 0)


def test_the_prompt_is_encoded_once_for_both_stages(tmp_path: Path, tiny_pipeline: Any) -> None:
    calls: list[int] = []
    handle = tiny_pipeline.text_encoder.register_forward_pre_hook(
        lambda module, args, kwargs: calls.append(1), with_kwargs=True
    )
    try:
        engine = tiny_engine(tiny_pipeline, tiny_upsampler(), two_stage="on")
        request = make_request(tmp_path, generate_audio=False)
        result = engine.generate(request, RecordingSink())
    finally:
        handle.remove()
    assert result.metadata["two_stage"] and result.metadata["steps"] == 8 + 3
    assert calls == [1]


@pytest.mark.parametrize(("version", "cross_timestep"), [("2.0", False), ("2.3", True)])
def test_cross_timestep_follows_the_model_version(
    tmp_path: Path, version: str, cross_timestep: bool
) -> None:
    """LTX-2.3 and later modulate the audio-video cross-attention with the other modality's
    sigma (their transformers have cross-attention modulation); LTX-2.0 does not, and
    diffusers' pipelines assume 2.3 unless told."""
    from diffusers import LTX2Pipeline, LTX2VideoTransformer3DModel

    components = tiny_components()
    if version == "2.3":
        config = {k: v for k, v in components["transformer"].config.items() if k[0] != "_"}
        config.update(cross_attn_mod=True, audio_cross_attn_mod=True, gated_attn=True)
        torch.manual_seed(0)
        components["transformer"] = LTX2VideoTransformer3DModel(**config)
    pipeline = LTX2Pipeline(**components)
    flags: list[bool] = []
    pipeline.transformer.register_forward_pre_hook(
        lambda module, args, kwargs: flags.append(kwargs["use_cross_timestep"]), with_kwargs=True
    )
    engine = tiny_engine(pipeline, max_generation_side=64)
    request = make_request(tmp_path, aspect_ratio="1:1")
    assert_contract_mp4(engine.generate(request, RecordingSink()).files[0], request)
    assert flags == [cross_timestep] * 8
