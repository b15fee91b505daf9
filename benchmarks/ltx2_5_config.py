"""The configuration of LTX-2.5 in diffusers layout (the engine's default checkpoint,
Lightricks/LTX-2.5-Diffusers), written down so that the benchmark builds it without a
download: every value, where it comes from, and what could not be confirmed.

The checkpoint's own config files could not be read: the repository is gated (its files
need an accepted licence and a login), https://huggingface.co/Lightricks/LTX-2.5-Diffusers.
So each component is built from the nearest published configuration and the published
descriptions of what 2.5 changed:

- LTX-2.3 and LTX-2.5 share the transformer, video VAE and audio VAE architecture; 2.5
  drops the video feed-forward biases, adds a learned keyframe position embedding, and
  pairs with a Gemma 4 text encoder instead of Gemma 3 (stable-diffusion.cpp's LTX-2 notes,
  https://raw.githubusercontent.com/leejet/stable-diffusion.cpp/master/docs/ltx2.md);
- 2.3 over 2.0: gated attention, prompt modulation (cross-attention AdaLN, prompt AdaLN),
  per-modality text projections in the connectors, the 48 kHz bandwidth-extension vocoder
  (https://github.com/AI-Hypercomputer/maxdiffusion/pull/402, and diffusers 0.42.1's
  transformer_ltx2.py and connectors.py, whose comments name the 2.3 parts).

`UNCONFIRMED` lists, per component, the values no published file showed; each is the
value the descriptions above imply, or diffusers 0.42.1's default where they say nothing.
The parameter counts the dry run prints follow from these values.
"""

from __future__ import annotations

from typing import Any

# The LTX-2.0 transformer as published, https://huggingface.co/Lightricks/LTX-2/blob/main/
# transformer/config.json (every dimension below), with the 2.3 and 2.5 changes on top.
TRANSFORMER: dict[str, Any] = {
    "in_channels": 128,
    "out_channels": 128,
    "patch_size": 1,
    "patch_size_t": 1,
    "num_attention_heads": 32,
    "attention_head_dim": 128,
    "cross_attention_dim": 4096,
    "vae_scale_factors": (8, 32, 32),
    "pos_embed_max_pos": 20,
    "base_height": 2048,
    "base_width": 2048,
    "audio_in_channels": 128,
    "audio_out_channels": 128,
    "audio_patch_size": 1,
    "audio_patch_size_t": 1,
    "audio_num_attention_heads": 32,
    "audio_attention_head_dim": 64,
    "audio_cross_attention_dim": 2048,
    "audio_scale_factor": 4,
    "audio_pos_embed_max_pos": 20,
    "audio_sampling_rate": 16000,
    "audio_hop_length": 160,
    "num_layers": 48,
    "activation_fn": "gelu-approximate",
    "qk_norm": "rms_norm_across_heads",
    "norm_elementwise_affine": False,
    "norm_eps": 1e-6,
    "caption_channels": 3840,
    "attention_bias": True,
    "attention_out_bias": True,
    "rope_theta": 10000.0,
    "rope_double_precision": True,
    "causal_offset": 1,
    "timestep_scale_multiplier": 1000,
    "cross_attn_timestep_scale_multiplier": 1000,
    "rope_type": "split",
    # LTX-2.3 on: gated attention and cross-attention modulation in both streams; the
    # caption is projected in the connectors, not here; STG's perturbable attention.
    "gated_attn": True,
    "cross_attn_mod": True,
    "audio_gated_attn": True,
    "audio_cross_attn_mod": True,
    "use_prompt_embeddings": False,
    "perturbed_attn": True,
    "use_prompt_adaln_single": True,
    # LTX-2.5: no video feed-forward biases (the audio ones stay), keyframe embedding.
    "ff_bias": False,
    "audio_ff_bias": True,
    "use_keyframes_abs_pos_embedding": True,
}

# The LTX-2.3 connectors as published by a diffusers maintainer's conversion,
# https://huggingface.co/dg845/LTX-2.3-Distilled-Diffusers/blob/main/connectors/config.json
# (every value up to the video registers; the video gate and width follow the audio ones
# and the transformer's 4096-wide video stream).
CONNECTORS: dict[str, Any] = {
    "caption_channels": 3840,
    "text_proj_in_factor": 49,
    "video_connector_num_attention_heads": 32,
    "video_connector_attention_head_dim": 128,
    "video_connector_num_layers": 8,
    "video_connector_num_learnable_registers": 128,
    "video_gated_attn": True,
    "audio_connector_num_attention_heads": 32,
    "audio_connector_attention_head_dim": 64,
    "audio_connector_num_layers": 8,
    "audio_connector_num_learnable_registers": 128,
    "audio_gated_attn": True,
    "connector_rope_base_seq_len": 4096,
    "rope_theta": 10000.0,
    "rope_double_precision": True,
    "causal_temporal_positioning": False,
    "rope_type": "split",
    "per_modality_projections": True,
    "video_hidden_dim": 4096,
    "audio_hidden_dim": 2048,
    "proj_bias": True,
}

# The LTX-2.3 video VAE, https://huggingface.co/diffusers/LTX-2.3-Diffusers/blob/main/vae/
# config.json: block_out_channels, decoder_block_out_channels and decoder_causal were
# read there; the rest describes the same four-stage decoder (see UNCONFIRMED).
VIDEO_VAE: dict[str, Any] = {
    "in_channels": 3,
    "out_channels": 3,
    "latent_channels": 128,
    "block_out_channels": (256, 512, 1024, 1024),
    "decoder_block_out_channels": (256, 512, 512, 1024),
    "layers_per_block": (4, 6, 4, 2, 2),
    "decoder_layers_per_block": (4, 6, 4, 2, 2),
    "spatio_temporal_scaling": (True, True, True, True),
    "decoder_spatio_temporal_scaling": (True, True, True, True),
    "decoder_inject_noise": (False, False, False, False, False),
    "downsample_type": ("spatial", "temporal", "spatiotemporal", "spatiotemporal"),
    "upsample_type": ("spatiotemporal", "spatiotemporal", "temporal", "spatial"),
    "upsample_residual": (False, False, False, False),
    "upsample_factor": (2, 2, 1, 2),
    "timestep_conditioning": False,
    "patch_size": 4,
    "patch_size_t": 1,
    "encoder_causal": True,
    "decoder_causal": False,
    "encoder_spatial_padding_mode": "zeros",
    "decoder_spatial_padding_mode": "zeros",
    "spatial_compression_ratio": 32,
    "temporal_compression_ratio": 8,
}

AUDIO_VAE: dict[str, Any] = {}
"""diffusers' `AutoencoderKLLTX2Audio` defaults: 8 latent channels, 64 mel bins, 16 kHz."""

VOCODER: dict[str, Any] = {}
"""diffusers' `LTX2VocoderWithBWE` defaults: the vocoder plus bandwidth extension to 48 kHz,
the class LTX-2.3 diffusers checkpoints name (for example in
https://huggingface.co/OzzyGT/LTX-2.3/blob/main/model_index.json)."""

# The x2 spatial latent upsampler: diffusers' `LTX2LatentUpsamplerModel` defaults (1024
# channels, 4 blocks per stage), a plain x2 pixel-shuffle rather than the rational one.
UPSAMPLER: dict[str, Any] = {"use_rational_resampler": False}

# Gemma 4 12B (Gemma4UnifiedForConditionalGeneration, what diffusers 0.42.1 loads for 2.5),
# as published in the GGUF metadata of gemma4:12b, https://ollama.com/library/
# gemma4:12b-it-q8_0/blobs/047dae1d7894 (48 layers, width 3840, 16 heads, 8 KV heads, head
# 256 / 512 on the full-attention layers, feed-forward 15360, window 1024, softcap 30,
# context 262144) and https://huggingface.co/mlboydaisuke/Gemma-4-12B-CoreAI (vocabulary
# 262144, tied embeddings). The vision and audio embedders keep transformers' defaults.
TEXT_ENCODER: dict[str, Any] = {
    "vocab_size": 262_144,
    "hidden_size": 3840,
    "intermediate_size": 15_360,
    "num_hidden_layers": 48,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "head_dim": 256,
    "global_head_dim": 512,
    "sliding_window": 1024,
    "final_logit_softcapping": 30.0,
    "max_position_embeddings": 262_144,
    "tie_word_embeddings": True,
}

# The LTX-2.3 diffusers scheduler configuration (the distilled schedule replaces it anyway),
# https://huggingface.co/Efficient-Large-Model/LTX-2.3-Diffusers/blob/main/scheduler/
# scheduler_config.json.
SCHEDULER: dict[str, Any] = {
    "use_dynamic_shifting": True,
    "base_shift": 0.95,
    "max_shift": 2.05,
    "base_image_seq_len": 1024,
    "max_image_seq_len": 4096,
    "shift_terminal": 0.1,
}

UNCONFIRMED: dict[str, str] = {
    "transformer": "every 2.3/2.5 flag (from the descriptions, not the file); "
    "use_prompt_adaln_single: diffusers names a 2.5 variant without it (0.07 B fewer)",
    "connectors": "video_gated_attn, video_hidden_dim; that 2.5 keeps 2.3's connectors",
    "vae": "layers per block, up/downsample types, factors, residuals, padding",
    "audio_vae": "that 2.5 keeps diffusers' defaults (the 2.3 architecture)",
    "vocoder": "that 2.5 keeps diffusers' LTX2VocoderWithBWE defaults",
    "latent_upsampler": "every value (diffusers' defaults)",
    "text_encoder": "full-attention layers' KV heads and shared K/V (0.24 B between the "
    "readings); that LTX's fine-tune keeps Gemma 4 12B's shape",
}
