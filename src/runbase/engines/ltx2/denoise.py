"""The denoising stages of one request: the prompt once, one or two stages, the upsampler.

encode the prompt (once: stage 2 reuses stage 1's embeddings)
stage 1   the whole clip at the plan's size (or half of it, two-stage)
two-stage upsample the latents x2, re-noise to the first stage-2 sigma, 3 steps at
          full size, conditioned again on the images at full size
decode    the last stage decodes video and audio (not on a rank that only helps)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from runbase.engines.base import GenerationRequest, ProgressSink
from runbase.engines.ltx2.conditioning import stage_inputs
from runbase.engines.ltx2.options import LTX2Options
from runbase.engines.ltx2.plan import LTX2Plan
from runbase.engines.ltx2.progress import DENOISE_END, DENOISE_START, check_stop, step_callback

__all__ = ["denoise", "uses_cross_timestep"]

# Distilled sampling is plain flow matching: every extra guidance pass (CFG, STG, modality
# isolation) is switched off, each of which would cost a whole transformer pass per step.
_NO_GUIDANCE: Final[Mapping[str, float]] = {
    "guidance_scale": 1.0,
    "stg_scale": 0.0,
    "modality_scale": 1.0,
    "guidance_rescale": 0.0,
    "audio_guidance_scale": 1.0,
    "audio_stg_scale": 0.0,
    "audio_modality_scale": 1.0,
    "audio_guidance_rescale": 0.0,
}
_STATIC_CAMERA: Final = "The camera is fixed: a static shot, no camera movement."


def uses_cross_timestep(transformer: Any) -> bool:
    """Whether the audio-video cross-attention is modulated by the other modality's sigma:
    LTX-2.3 and later (their transformers have cross-attention modulation), not LTX-2.0.
    diffusers' pipelines default to True, the 2.3 behaviour, whatever the checkpoint."""
    config = transformer.config
    return bool(getattr(config, "cross_attn_mod", False)) or bool(
        getattr(config, "audio_cross_attn_mod", False)
    )


def denoise(
    torch: Any,
    pipelines: Mapping[str, Any],
    upsampler: Any,
    options: LTX2Options,
    plan: LTX2Plan,
    request: GenerationRequest,
    progress: ProgressSink,
    *,
    kind: str,
    decode: bool = True,
) -> tuple[Any, Any]:
    """Run the stage(s) of `request`: video (1, F, C, H, W) in [0, 1] and audio
    (1, channels, n); without `decode`, the last stage's latents instead (a
    context-parallel rank that only helps denoise)."""
    from diffusers.pipelines.ltx2.utils import (
        DISTILLED_SIGMA_VALUES,
        STAGE_2_DISTILLED_SIGMA_VALUES,
    )

    stages = plan.stages if options.distilled else ((plan.width, plan.height, options.steps),)
    work = [w * h * steps for w, h, steps in stages]
    done = 0.0
    shared = pipelines["text"]  # every pipeline holds the same text encoder and transformer
    common: dict[str, Any] = {
        **_prompt_embeddings(shared, request, options),
        "num_frames": plan.num_frames,
        "frame_rate": float(request.fps),
        "use_cross_timestep": uses_cross_timestep(shared.transformer),
        "generator": torch.Generator(device="cpu").manual_seed(request.seed),
        "return_dict": False,
    }
    if options.distilled:
        common.update(_NO_GUIDANCE)
    latents: Any = None
    audio_latents: Any = None
    video: Any = None
    audio: Any = None
    for index, (width, height, steps) in enumerate(stages):
        final = index == len(stages) - 1
        name, images = stage_inputs(
            kind,
            request.images,
            width=width,
            height=height,
            refining=index > 0,
            last_frame=request.num_frames - 1,
        )
        call = dict(common, **images, width=width, height=height)
        call["output_type"] = "pt" if final and decode else "latent"
        if not options.distilled:
            call["num_inference_steps"] = steps
        elif index == 0:
            call["sigmas"] = list(DISTILLED_SIGMA_VALUES)
        else:
            # Refine the upsampled latents: re-noise to the first stage-2 sigma, 3 steps.
            call["sigmas"] = list(STAGE_2_DISTILLED_SIGMA_VALUES)
            call["noise_scale"] = STAGE_2_DISTILLED_SIGMA_VALUES[0]
            call["latents"], call["audio_latents"] = latents, audio_latents
        start = DENOISE_START + (DENOISE_END - DENOISE_START) * done / sum(work)
        span = (DENOISE_END - DENOISE_START) * work[index] / sum(work)
        call["callback_on_step_end"] = step_callback(progress, start, span, steps)
        check_stop(progress)
        video, audio = pipelines[name](**call)
        done += work[index]
        if not final:
            check_stop(progress)
            progress.progress(round(start + span, 4), "upsampling")
            latents = upsampler(video.to(device=upsampler.device, dtype=upsampler.dtype))
            audio_latents = audio
    return video, audio


def _prompt_embeddings(
    pipeline: Any, request: GenerationRequest, options: LTX2Options
) -> dict[str, Any]:
    """The prompt (and, guided, the negative prompt) through the text encoder, once for
    every stage of the run: the pipelines take the embeddings instead of the text."""
    prompt = request.prompt
    if request.input.get("camera_fixed"):
        prompt = f"{prompt}\n{_STATIC_CAMERA}"
    guided = not options.distilled
    negative = None
    if guided:
        from diffusers.pipelines.ltx2.utils import DEFAULT_NEGATIVE_PROMPT

        negative = DEFAULT_NEGATIVE_PROMPT
    embeds, mask, negative_embeds, negative_mask = pipeline.encode_prompt(
        prompt=prompt,
        negative_prompt=negative,
        do_classifier_free_guidance=guided,
        max_sequence_length=options.max_sequence_length,
        device=pipeline._execution_device,
    )
    found = {"prompt_embeds": embeds, "prompt_attention_mask": mask}
    if guided:
        found.update(
            negative_prompt_embeds=negative_embeds, negative_prompt_attention_mask=negative_mask
        )
    return found
