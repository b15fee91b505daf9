"""The full-size LTX-2.5 model with random weights, for benchmarks/ltx2_gpu.py.

Built from ltx2_5_config.py, directly on the device and in the dtype asked for: speed and
memory do not depend on weight values, and nothing is downloaded. On the "meta" device
nothing is allocated at all: the dry run counts parameters that way, on any machine.
"""

from __future__ import annotations

from typing import Any

import ltx2_5_config as config

__all__ = ["RandomWeights", "build_components", "build_on_this_gpu", "describe_components"]


def build_components(device: str, dtype: Any) -> tuple[dict[str, Any], Any]:
    """Every LTX-2.5 component with random weights on `device` in `dtype`, and the x2
    latent upsampler: (components for `LTX2Pipeline`, upsampler)."""
    import torch
    from diffusers import (
        AutoencoderKLLTX2Audio,
        AutoencoderKLLTX2Video,
        FlowMatchEulerDiscreteScheduler,
        LTX2VideoTransformer3DModel,
    )
    from diffusers.pipelines.ltx2 import LTX2LatentUpsamplerModel, LTX2TextConnectors
    from diffusers.pipelines.ltx2.vocoder import LTX2VocoderWithBWE
    from transformers import Gemma4UnifiedConfig, Gemma4UnifiedForConditionalGeneration

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # weights are born in bf16: 22B in fp32 would not fit
    try:
        with torch.device(device):
            text = dict(config.TEXT_ENCODER)
            tied = text.pop("tie_word_embeddings")
            text_encoder = Gemma4UnifiedForConditionalGeneration(
                Gemma4UnifiedConfig(text_config=text, tie_word_embeddings=tied)
            ).eval()
            components = {
                "transformer": LTX2VideoTransformer3DModel(**config.TRANSFORMER).eval(),
                "connectors": LTX2TextConnectors(**config.CONNECTORS).eval(),
                "vae": AutoencoderKLLTX2Video(**config.VIDEO_VAE).eval(),
                "audio_vae": AutoencoderKLLTX2Audio(**config.AUDIO_VAE).eval(),
                "vocoder": LTX2VocoderWithBWE(**config.VOCODER).eval(),
                "text_encoder": text_encoder,
            }
            upsampler = LTX2LatentUpsamplerModel(**config.UPSAMPLER).eval()
    finally:
        torch.set_default_dtype(previous)
    components.update(
        scheduler=FlowMatchEulerDiscreteScheduler(**config.SCHEDULER),
        tokenizer=byte_tokenizer(),
        processor=None,
        prompt_enhancer=None,
        duration_head=None,
    )
    return components, upsampler


def byte_tokenizer() -> Any:
    """A Gemma tokenizer built in memory (byte fallback): any prompt, no download. The text
    encoder pads every prompt to the same length, so its cost does not depend on the ids."""
    from transformers import GemmaTokenizer

    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4}
    vocab.update({f"<0x{b:02X}>": 5 + b for b in range(256)})
    return GemmaTokenizer(vocab=vocab, merges=[])


def describe_components(components: dict[str, Any], upsampler: Any) -> list[str]:
    """Parameter counts and bf16 sizes per component, after checking the shapes the
    components must agree on (a wrong config fails here, not on a GPU)."""
    text = components["text_encoder"].config.text_config
    connectors = components["connectors"].config
    transformer = components["transformer"].config
    if connectors.caption_channels != text.hidden_size:
        raise SystemExit("connectors.caption_channels must equal the text hidden size")
    if connectors.text_proj_in_factor != text.num_hidden_layers + 1:
        raise SystemExit("connectors.text_proj_in_factor must be the text layers + 1")
    if (
        connectors.video_hidden_dim
        != transformer.num_attention_heads * transformer.attention_head_dim
    ):
        raise SystemExit("the connectors' video width must be the transformer's")
    if transformer.in_channels != components["vae"].config.latent_channels:
        raise SystemExit("the transformer's channels must match the video VAE's latents")
    lines, total = [], 0
    for name, module in [*components.items(), ("latent_upsampler", upsampler)]:
        if not hasattr(module, "parameters"):
            continue
        count = sum(p.numel() for p in module.parameters())
        total += count
        size = f"{count / 1e9:7.3f} B  {count * 2 / 2**30:5.1f} GiB"
        lines.append(f"  {name:<17} {size}  {_shape(module)}")
        if name in config.UNCONFIRMED:
            lines.append(f"  {'':<17} not confirmed: {config.UNCONFIRMED[name]}")
    lines.append(f"  {'total':<17} {total / 1e9:7.3f} B  {total * 2 / 2**30:5.1f} GiB (bf16)")
    return lines


_SHAPE_KEYS = (
    "num_layers",
    "num_attention_heads",
    "attention_head_dim",
    "audio_num_attention_heads",
    "audio_attention_head_dim",
    "gated_attn",
    "cross_attn_mod",
    "ff_bias",
    "use_keyframes_abs_pos_embedding",
    "video_connector_num_layers",
    "per_modality_projections",
    "block_out_channels",
    "decoder_block_out_channels",
    "latent_channels",
    "mel_bins",
    "hidden_channels",
    "bwe_hidden_channels",
    "output_sampling_rate",
    "mid_channels",
    "num_blocks_per_stage",
    "num_hidden_layers",
    "hidden_size",
    "intermediate_size",
    "num_key_value_heads",
    "vocab_size",
)


def _shape(module: Any) -> str:
    """The class and the main dimensions of a component, from its config."""
    found = getattr(module.config, "text_config", module.config)
    values = [f"{key}={getattr(found, key)}" for key in _SHAPE_KEYS if hasattr(found, key)]
    return f"{type(module).__name__}: {', '.join(values)}"


_BUILT: dict[str, Any] = {}


def build_on_this_gpu(part: str) -> Any:
    """The random-weight pipeline or upsampler, built once per process on its current GPU."""
    import torch
    from diffusers import LTX2Pipeline

    if not _BUILT:
        torch.manual_seed(0)  # the same weights on every rank
        components, upsampler = build_components(
            f"cuda:{torch.cuda.current_device()}", torch.bfloat16
        )
        _BUILT.update(pipeline=LTX2Pipeline(**components), upsampler=upsampler)
    return _BUILT[part]


class RandomWeights:
    """Stands for the random model in a context-parallel run: pickled to each rank, it is
    built there, on the rank's GPU (a 22B model cannot be sent)."""

    def __init__(self, part: str) -> None:
        self.part = part

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (build_on_this_gpu, (self.part,))
