"""Tiny LTX-2 pipelines with random weights, built in memory, and the helpers their tests share.

The pipelines are built without any file (tokenizer and Gemma 3 text encoder included), so
nothing touches the Hugging Face Hub. The tiny video VAE compresses like the real one (32x
space, 8x time) so that the contract's 97 frames cost a fraction of a second. Used by the
test_ltx2*.py files.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image

from runbase.engines.base import GenerationRequest
from runbase.engines.ltx2 import LTX2Engine, LTX2Options
from runbase.media.probe import probe
from support import engine_request

PROMPT = 'A robot waves at the camera and says "Hello there, friend."'
TINY_OPTIONS: dict[str, Any] = {
    "device": "cpu",
    "dtype": "float32",
    "max_generation_side": 128,
    "max_sequence_length": 256,
    "preset": "superfast",
    "two_stage": "off",
}
"""Engine options for the tiny pipelines: CPU, 64-128 px generations, fast encoding."""


def tiny_components(*, registers: int | None = None, rope_type: str = "split") -> dict[str, Any]:
    """LTX-2 components small enough for a CPU test, built without any file.

    `registers`: learnable registers in the text connectors, as every published checkpoint
    has (128 there); they replace the prompt's padding, so the prompt mask keeps every token.
    `rope_type`: "split" or "interleaved" rotary embeddings in the transformer and connectors.
    """
    from diffusers import (
        AutoencoderKLLTX2Audio,
        AutoencoderKLLTX2Video,
        FlowMatchEulerDiscreteScheduler,
        LTX2VideoTransformer3DModel,
    )
    from diffusers.pipelines.ltx2 import LTX2TextConnectors
    from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration, GemmaTokenizer

    # A byte-fallback BPE vocabulary: every text tokenizes, and decodes back exactly.
    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4}
    vocab.update({f"<0x{b:02X}>": 5 + b for b in range(256)})
    torch.manual_seed(0)
    text_encoder = Gemma3ForConditionalGeneration(
        Gemma3Config(
            text_config={
                "vocab_size": len(vocab),
                "hidden_size": 32,
                "intermediate_size": 64,
                "num_hidden_layers": 2,
                "num_attention_heads": 2,
                "num_key_value_heads": 1,
                "head_dim": 8,
                "max_position_embeddings": 256,
                "sliding_window": 32,
                "layer_types": ["sliding_attention", "full_attention"],
            },
            vision_config={
                "hidden_size": 16,
                "intermediate_size": 32,
                "num_hidden_layers": 1,
                "num_attention_heads": 2,
                "image_size": 28,
                "patch_size": 14,
            },
            mm_tokens_per_image=4,
        )
    ).eval()
    caption_channels, layers = 32, 2  # text hidden size; text layers (+1 for embeddings)
    transformer = LTX2VideoTransformer3DModel(
        in_channels=4,
        out_channels=4,
        patch_size=1,
        patch_size_t=1,
        num_attention_heads=2,
        attention_head_dim=8,
        cross_attention_dim=16,
        audio_in_channels=4,
        audio_out_channels=4,
        audio_num_attention_heads=2,
        audio_attention_head_dim=4,
        audio_cross_attention_dim=8,
        num_layers=2,
        qk_norm="rms_norm_across_heads",
        caption_channels=caption_channels,
        rope_double_precision=False,
        rope_type=rope_type,
    )
    connectors = LTX2TextConnectors(
        caption_channels=caption_channels,
        text_proj_in_factor=layers + 1,
        video_connector_num_attention_heads=4,
        video_connector_attention_head_dim=8,
        video_connector_num_layers=1,
        video_connector_num_learnable_registers=registers,
        audio_connector_num_attention_heads=4,
        audio_connector_attention_head_dim=8,
        audio_connector_num_layers=1,
        audio_connector_num_learnable_registers=registers,
        connector_rope_base_seq_len=32,
        rope_theta=10000.0,
        rope_double_precision=False,
        causal_temporal_positioning=False,
        rope_type=rope_type,
    )
    # Patch 4 x three downsampling blocks: 32x in space and 8x in time, as the real VAE,
    # so that a 64x64, 97-frame generation is only 2x2x13 latent tokens.
    vae = AutoencoderKLLTX2Video(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(8, 8, 8),
        decoder_block_out_channels=(8, 8, 8),
        layers_per_block=(1, 1, 1),
        decoder_layers_per_block=(1, 1, 1, 1),
        spatio_temporal_scaling=(True, True, True),
        decoder_spatio_temporal_scaling=(True, True, True),
        decoder_inject_noise=(False, False, False, False),
        downsample_type=("spatiotemporal", "spatiotemporal", "spatiotemporal"),
        upsample_residual=(False, False, False),
        upsample_factor=(1, 1, 1),
        timestep_conditioning=False,
        patch_size=4,
        patch_size_t=1,
        encoder_causal=True,
        decoder_causal=False,
    )
    vae.use_framewise_encoding = vae.use_framewise_decoding = False
    audio_vae = AutoencoderKLLTX2Audio(
        base_channels=4,
        output_channels=2,
        ch_mult=(1,),
        num_res_blocks=1,
        attn_resolutions=None,
        in_channels=2,
        resolution=32,
        latent_channels=2,
        norm_type="pixel",
        causality_axis="height",
        dropout=0.0,
        mid_block_add_attention=False,
        sample_rate=16000,
        mel_hop_length=160,
        is_causal=True,
        mel_bins=8,
    )
    # 100 mel frames a second, upsampled 4 x 5 x 8 = 160 times: truly 16 kHz audio.
    vocoder = LTX2Vocoder(
        in_channels=2 * 8,
        hidden_channels=32,
        out_channels=2,
        upsample_kernel_sizes=[8, 10, 16],
        upsample_factors=[4, 5, 8],
        resnet_kernel_sizes=[3],
        resnet_dilations=[[1, 3, 5]],
        leaky_relu_negative_slope=0.1,
        output_sampling_rate=16000,
    )
    return {
        "transformer": transformer,
        "vae": vae,
        "audio_vae": audio_vae,
        "scheduler": FlowMatchEulerDiscreteScheduler(),
        "text_encoder": text_encoder,
        "tokenizer": GemmaTokenizer(vocab=vocab, merges=[]),
        "connectors": connectors,
        "vocoder": vocoder,
        "processor": None,
        "prompt_enhancer": None,
        "duration_head": None,
    }


def tiny_upsampler() -> Any:
    from diffusers.pipelines.ltx2 import LTX2LatentUpsamplerModel

    torch.manual_seed(1)
    return LTX2LatentUpsamplerModel(in_channels=4, mid_channels=32, num_blocks_per_stage=1).eval()


def tiny_engine(pipeline: Any, upsampler: Any = None, **options: Any) -> LTX2Engine:
    values = {**TINY_OPTIONS, **options}
    engine = LTX2Engine(LTX2Options(**values), pipeline=pipeline, upsampler=upsampler)
    engine.setup()
    return engine


def make_request(
    scratch: Path, *, seed: int = 7, images: tuple[Image.Image, ...] = (), **fields: Any
) -> GenerationRequest:
    """A request as the worker builds it: validated input, contract geometry."""
    fields = {"prompt": PROMPT, "resolution": "480p", **fields}
    return engine_request(scratch, fields, seed=seed, images=images, run_id="run_ltx2_test")


def gradient(width: int, height: int, hue: int) -> Image.Image:
    ys, xs = np.mgrid[0:height, 0:width]
    rgb = np.stack([(xs * 255 // width + hue) % 256, ys * 255 // height, 255 - ys * 255 // height])
    return Image.fromarray(np.moveaxis(rgb, 0, -1).astype(np.uint8))


def assert_contract_mp4(path: Path, request: GenerationRequest) -> None:
    info = probe(path)
    assert info.video is not None
    assert (info.video.width, info.video.height) == (request.width, request.height)
    assert info.video.num_frames == request.num_frames
    assert info.video.fps == pytest.approx(24)
    assert info.video.pix_fmt == "yuv420p" and info.video.codec == "h264"
    assert info.is_faststart
    if request.audio:
        [audio] = info.audio
        assert (audio.codec, audio.sample_rate, audio.channels) == ("aac", 48_000, 2)
        assert audio.duration == pytest.approx(request.num_frames / 24, abs=0.05)
    else:
        assert info.audio == ()
