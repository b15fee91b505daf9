"""`LTX2Engine`: video with its sound track from LTX-2, through diffusers, on your own GPUs.

LTX-2 (Lightricks) generates video and stereo audio together, from text, from a first frame,
or from a first and a last frame, at any size that is a multiple of 32 and up to 20 s. It is
the open model closest to seedance-1.5-pro (docs/ltx2.md), so it serves that
model id on operators' GPUs. See docs/ltx2.md for settings, speed options and the licence.

    setup()                       once per process; the model then stays loaded
      1. torch and diffusers present, the device there, the weights on disk (or the
         operator allows downloads): otherwise `EngineUnavailable` naming what is missing,
         and the executor falls back to the next configured engine
      2. load the pipeline (and the x2 latent upsampler), then apply the speed options
    generate(request, progress)
      1. plan: a generation size the model accepts (multiples of 64 near the output size),
         8k+1 frames, one stage or two
      2. fit the images, if any, to the generation size (centre crop and resize)
      3. denoise with LTX2Pipeline (text), LTX2ImageToVideoPipeline (first frame) or
         LTX2ConditionPipeline (first frame at index 0, last frame at index -1); two-stage:
         half size -> latent upsampler x2 -> 3 refining steps at full size
      4. resize and centre-crop the frames to the exact output size and encode them, with
         the audio or without, through `runbase.media.video.write_mp4`, as every engine does

With `ltx2_context_parallel` N > 1, setup() starts N rank processes that share every
generation across N GPUs, and generate() hands each run to them (engines/ltx2_parallel.py).

torch and diffusers are imported in `setup()`, never at module import: the server process
loads this module's name only, and must never import torch.
"""

from __future__ import annotations

import inspect
import logging
import math
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from runbase.engines.base import GenerationRequest, GenerationResult, ProgressSink
from runbase.errors import EngineUnavailable, GenerationFailed, RunCanceled, RunFailure

if TYPE_CHECKING:
    import numpy as np
    from PIL import Image

    from runbase.config import Settings
    from runbase.engines.ltx2_parallel import Rank, RankGroup

__all__ = ["LTX2Engine", "LTX2Options", "LTX2Plan", "generation_size"]

logger = logging.getLogger(__name__)

DEFAULT_MODEL: Final = "Lightricks/LTX-2.5-Diffusers"
SIZE_MULTIPLE: Final = 64
"""Generation sides are multiples of 64: the VAE needs 32, and the two-stage recipe halves
the size first (docs/ltx2.md, the size row of the parameter table)."""
TEMPORAL_RATIO: Final = 8
"""The video VAE packs 8 frames into one latent frame after the first: frames = 8k + 1."""
LARGE_AREA: Final = 1_500_000
"""Generations of at least this many pixels (1080p-sized) get the two-stage recipe and VAE
tiling under "auto"; the largest 720p generation (1472x640) has 0.94 MP."""

_DTYPES: Final = ("bfloat16", "float16", "float32")
_SWITCHES: Final = ("auto", "on", "off")
_OFFLOADS: Final = ("off", "model", "sequential")
_PRESETS: Final = ("superfast", "veryfast", "faster", "fast", "medium", "slow")
# "owner/name" as the Hugging Face Hub spells repository ids.
_REPO_ID: Final = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_FRAME_CHUNK: Final = 8
"""Frames resized on the device per batch: 8 frames of 1080p are about 200 MB as float."""
_DENOISE_START, _DENOISE_END = 0.05, 0.85
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


@dataclass(frozen=True, kw_only=True)
class LTX2Options:
    """How the engine loads and runs LTX-2; production values come from `Settings.ltx2_*`."""

    model: str = DEFAULT_MODEL
    """Weights in diffusers layout: a local folder, or a Hugging Face repo id in the cache."""
    upsampler: str | None = None
    """The x2 latent upsampler (folder or repo id); None: `model`'s `latent_upsampler/`."""
    device: str = "cuda"
    """Torch device; one worker per GPU through CUDA_VISIBLE_DEVICES. "cpu" is for tests."""
    dtype: str = "bfloat16"
    """Precision the weights are loaded in: bfloat16, float16 or float32."""
    distilled: bool = True
    """8 steps on the distilled sigmas with guidance 1.0; False: `steps` guided steps."""
    steps: int = 30
    """Denoising steps when not distilled."""
    fp8: bool = False
    """FP8 transformer weights where the GPU has FP8 (compute capability 8.9 or later)."""
    compile: bool = False
    """torch.compile the transformer's repeated blocks (slow first run, faster steps)."""
    vae_tiling: str = "auto"
    """Decode in tiles: "auto" (generations of LARGE_AREA pixels or more), "on", "off"."""
    cpu_offload: str = "off"
    """"off", "model" (one model on the GPU at a time) or "sequential" (layer by layer)."""
    two_stage: str = "auto"
    """Half size, x2 latent upsampler, refine: "auto" (LARGE_AREA or more), "on", "off"."""
    max_generation_side: int | None = None
    """Test/dev knob: cap the generation's longer side; output stays at the exact size."""
    allow_downloads: bool = False
    """Let `setup()` download missing weights from the Hugging Face Hub."""
    max_sequence_length: int = 1024
    """Prompt tokens given to the text encoder (2,000 characters fit in about 600)."""
    preset: str = "veryfast"
    """libx264 preset of the output (one that keeps the High profile)."""
    crf: int = 20
    """libx264 quality of the output."""
    context_parallel: int = 1
    """GPUs of this node that share every generation (Ulysses sequence parallelism, through
    rank processes on cuda:0 .. cuda:N-1; engines/ltx2_parallel.py); 1: off."""
    parallel_timeout_s: float = 300.0
    """How long a context-parallel rank waits for the others in a collective before failing."""

    def __post_init__(self) -> None:
        _check_choice("dtype", self.dtype, _DTYPES)
        _check_choice("vae_tiling", self.vae_tiling, _SWITCHES)
        _check_choice("cpu_offload", self.cpu_offload, _OFFLOADS)
        _check_choice("two_stage", self.two_stage, _SWITCHES)
        _check_choice("preset", self.preset, _PRESETS)
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        if self.max_generation_side is not None and self.max_generation_side < SIZE_MULTIPLE:
            raise ValueError(
                f"max_generation_side must be at least {SIZE_MULTIPLE}, "
                f"got {self.max_generation_side}"
            )
        if self.two_stage == "on" and not self.distilled:
            raise ValueError("two_stage 'on' refines with the distilled schedule: needs distilled")
        if self.context_parallel < 1 or self.parallel_timeout_s <= 0:
            raise ValueError("context_parallel must be at least 1 and parallel_timeout_s positive")
        if self.context_parallel > 1 and self.device not in ("cuda", "cpu"):
            raise ValueError(
                "with context_parallel > 1 the ranks take cuda:0 .. cuda:N-1 of "
                f"CUDA_VISIBLE_DEVICES: set device to 'cuda' (or 'cpu'), not {self.device!r}"
            )

    @classmethod
    def from_settings(cls, settings: Settings) -> LTX2Options:
        return cls(
            model=settings.ltx2_model,
            upsampler=settings.ltx2_upsampler,
            device=settings.ltx2_device,
            dtype=settings.ltx2_dtype,
            distilled=settings.ltx2_distilled,
            steps=settings.ltx2_steps,
            fp8=settings.ltx2_fp8,
            compile=settings.ltx2_compile,
            vae_tiling=settings.ltx2_vae_tiling,
            cpu_offload=settings.ltx2_cpu_offload,
            two_stage=settings.ltx2_two_stage,
            max_generation_side=settings.ltx2_max_generation_side,
            allow_downloads=settings.allow_downloads,
            context_parallel=settings.ltx2_context_parallel,
        )


@dataclass(frozen=True)
class LTX2Plan:
    """How one request is generated."""

    width: int
    height: int
    """The generation size (multiples of SIZE_MULTIPLE); frames are resized after."""
    num_frames: int
    """Frames generated: the request's count rounded up to 8k + 1 (the extra are dropped)."""
    two_stage: bool
    tiled_decode: bool

    @property
    def stages(self) -> tuple[tuple[int, int, int], ...]:
        """(width, height, steps) of each denoising stage (steps for the distilled schedule)."""
        if self.two_stage:
            return ((self.width // 2, self.height // 2, 8), (self.width, self.height, 3))
        return ((self.width, self.height, 8),)


def generation_size(
    width: int, height: int, *, multiple: int = SIZE_MULTIPLE, max_side: int | None = None
) -> tuple[int, int]:
    """The size to generate for an output of `width` x `height`.

    Each side is rounded down or up to a multiple of `multiple`; of the four candidates
    the one whose aspect ratio is nearest wins (so that the crop afterwards is smallest),
    and of equally near ones the larger (so that frames are shrunk rather than enlarged).
    `max_side` first scales the target down so that its longer side fits (a test knob).
    """
    if width <= 0 or height <= 0:
        raise ValueError(f"size {width}x{height} must be positive")
    scale = 1.0 if max_side is None else min(1.0, max_side / max(width, height))
    target_w, target_h = width * scale, height * scale
    limit = None if max_side is None else max(max_side // multiple, 1)

    def sides(target: float) -> set[int]:
        units = {math.floor(target / multiple), math.ceil(target / multiple)}
        return {max(1, unit if limit is None else min(unit, limit)) for unit in units}

    target_ratio = math.log(width / height)
    best = min(
        ((w, h) for w in sides(target_w) for h in sides(target_h)),
        key=lambda wh: (round(abs(math.log(wh[0] / wh[1]) - target_ratio), 9), -wh[0] * wh[1]),
    )
    return best[0] * multiple, best[1] * multiple


class LTX2Engine:
    """LTX-2 through diffusers: text, first-frame and first+last-frame to video with audio.

    Build it with `from_settings` in production, or give it a ready `pipeline` (an
    `LTX2Pipeline` or one with the same components, such as the tiny random-weight
    pipelines of the tests) and optionally a latent `upsampler`; a given pipeline keeps
    its dtype and is only moved to `options.device`.

    With `options.context_parallel` > 1 this object loads no model: `setup()` starts the
    rank processes (each an `LTX2Engine` given its `rank`) and `generate()` relays to them.
    """

    name = "ltx2"

    def __init__(
        self,
        options: LTX2Options | None = None,
        *,
        pipeline: Any = None,
        upsampler: Any = None,
        rank: Rank | None = None,
    ) -> None:
        self.options = options or LTX2Options()
        self._given_pipeline = pipeline
        self._upsampler: Any = upsampler
        self._rank = rank
        """This engine's place in a context-parallel group, when it is one of its ranks."""
        self._group: RankGroup | None = None
        self._torch: Any = None
        self._pipelines: dict[str, Any] = {}
        self._ready = False
        self.speed: dict[str, Any] = {}
        """The speed options in effect once set up (FP8 may fall back or be unavailable)."""

    @classmethod
    def from_settings(cls, settings: Settings) -> LTX2Engine:
        return cls(LTX2Options.from_settings(settings))

    # ---- set-up -----------------------------------------------------------------------

    def setup(self) -> None:
        """Check what LTX-2 needs, load it and apply the speed options; once per process.

        Raises:
            EngineUnavailable: torch or diffusers missing, no such device, no weights, or
                loading failed. The message names each missing piece.
        """
        if self._ready:
            return
        try:
            import diffusers  # noqa: F401
            import torch
        except ImportError as exc:
            raise EngineUnavailable(
                f"LTX-2 needs torch and diffusers ({exc.name} is missing): "
                "pip install 'runbase[ltx2]'"
            ) from exc
        self._torch = torch
        problems = [p for p in (self._missing_device(), *self._missing_weights()) if p]
        if problems:
            raise EngineUnavailable("LTX-2 cannot start: " + "; ".join(problems))
        if self.options.context_parallel > 1 and self._rank is None:
            from runbase.engines.ltx2_parallel import RankGroup

            self._group = RankGroup(
                self.options, pipeline=self._given_pipeline, upsampler=self._upsampler
            )
            self.speed = self._group.start()
            self._ready = True
            return
        started = time.monotonic()
        try:
            self._load()
            if self._rank is not None:
                self._rank.enable(self._pipelines["text"])
            self._apply_speed_options()
        except EngineUnavailable:
            raise
        except Exception as exc:
            raise EngineUnavailable(
                f"loading LTX-2 from {self.options.model!r} failed: {type(exc).__name__}: {exc}"
            ) from exc
        self._ready = True
        logger.info("LTX-2 ready on %s in %.1f s", self.options.device, time.monotonic() - started)

    def _missing_device(self) -> str | None:
        torch, device = self._torch, self.options.device
        if device == "cpu":
            return None
        if not device.startswith("cuda"):
            return f"unsupported device {device!r} (use 'cuda', 'cuda:N' or 'cpu')"
        if not torch.cuda.is_available():
            build = " (this torch is a CPU-only build)" if torch.version.cuda is None else ""
            return (
                f"no CUDA device: torch {torch.__version__}{build} sees no GPU; check the "
                "driver and CUDA_VISIBLE_DEVICES"
            )
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            return f"no device {device}: torch sees {torch.cuda.device_count()} GPU(s)"
        if self.options.context_parallel > torch.cuda.device_count():
            return (
                f"context_parallel {self.options.context_parallel} needs as many GPUs: torch "
                f"sees {torch.cuda.device_count()}; check CUDA_VISIBLE_DEVICES"
            )
        return None

    def _missing_weights(self) -> tuple[str, ...]:
        options = self.options
        problems = []
        if self._given_pipeline is None:
            missing = _missing_files(options.model, "model_index.json", options.allow_downloads)
            if missing:
                problems.append(f"LTX-2 weights: {missing}")
        if self._upsampler is not None or options.two_stage == "off":
            return tuple(problems)
        if options.upsampler is not None:
            # An upsampler the operator named must be there, whatever "auto" would do.
            missing = _missing_files(options.upsampler, "config.json", options.allow_downloads)
            if missing:
                problems.append(f"latent upsampler: {missing}")
        elif options.two_stage == "on" and self._upsampler_location() is None:
            problems.append(
                "two_stage is 'on' but there is no latent upsampler: set RUNBASE_LTX2_UPSAMPLER "
                f"or add a latent_upsampler/ folder to {options.model}"
            )
        return tuple(problems)

    def _upsampler_location(self) -> tuple[str, str | None] | None:
        """(reference, subfolder) of the latent upsampler, or None when there is none."""
        options = self.options
        if options.upsampler is not None:
            return options.upsampler, None
        if self._given_pipeline is not None:
            return None
        if _missing_files(options.model, "latent_upsampler/config.json", options.allow_downloads):
            return None
        return options.model, "latent_upsampler"

    def _load(self) -> None:
        torch, options = self._torch, self.options
        from diffusers import LTX2ConditionPipeline, LTX2ImageToVideoPipeline, LTX2Pipeline

        dtype = getattr(torch, options.dtype)
        base = self._given_pipeline
        if base is None:
            base = LTX2Pipeline.from_pretrained(
                options.model, dtype=dtype, local_files_only=not options.allow_downloads
            )
        if self._upsampler is None and options.two_stage != "off":
            self._upsampler = self._load_upsampler(dtype)
        if options.distilled:
            # The distilled sigmas are used as they are, as in Lightricks' reference
            # pipelines: the checkpoints' schedulers would shift them by resolution.
            from diffusers import FlowMatchEulerDiscreteScheduler

            base.scheduler = FlowMatchEulerDiscreteScheduler.from_config(
                base.scheduler.config, use_dynamic_shifting=False, shift_terminal=None, shift=1.0
            )
        components = dict(base.components)
        # The three pipelines share one set of modules: no weight is held twice.
        self._pipelines = {
            "text": base,
            "image": _build(LTX2ImageToVideoPipeline, components),
            "frames": _build(LTX2ConditionPipeline, components),
        }
        for pipeline in self._pipelines.values():
            pipeline.set_progress_bar_config(disable=True)

    def _load_upsampler(self, dtype: Any) -> Any:
        """The latent upsampler, or None when "auto" finds none (one stage it is, then)."""
        options = self.options
        location = self._upsampler_location()
        if location is None:
            logger.warning("no latent upsampler found: 1080p runs are generated in one stage")
            return None
        from diffusers.pipelines.ltx2 import LTX2LatentUpsamplerModel

        reference, subfolder = location
        extra = {} if subfolder is None else {"subfolder": subfolder}
        try:
            return LTX2LatentUpsamplerModel.from_pretrained(
                reference,
                dtype=dtype,
                local_files_only=not options.allow_downloads,
                **extra,
            )
        except Exception as exc:
            # Only "auto" with the model's own subfolder gets here without a check: with
            # downloads allowed, whether the repository has one is known only by trying.
            if options.two_stage == "on" or options.upsampler is not None:
                raise
            logger.warning("no latent upsampler (%s): 1080p runs use one stage", exc)
            return None

    def _apply_speed_options(self) -> None:
        torch, options = self._torch, self.options
        base = self._pipelines["text"]
        device = torch.device(options.device)
        self.speed = {
            "dtype": str(base.transformer.dtype).removeprefix("torch."),
            "distilled": options.distilled,
            "cpu_offload": options.cpu_offload,
            "fp8": "off",
            "compile": options.compile,
            "two_stage": options.two_stage if self._upsampler is not None else "off",
            "context_parallel": options.context_parallel,
        }
        if options.cpu_offload == "model":
            base.enable_model_cpu_offload(device=device)
        elif options.cpu_offload == "sequential":
            base.enable_sequential_cpu_offload(device=device)
        else:
            base.to(device)
        if self._upsampler is not None:
            self._upsampler.to(device)
            self._upsampler.eval()
        if options.fp8:
            self._apply_fp8(base.transformer, device)
        if options.compile:
            # Regional compilation: one block is compiled and reused by all 48, so the
            # first run pays seconds rather than minutes; dynamic shapes spare a recompile
            # for every size and duration.
            base.transformer.compile_repeated_blocks(dynamic=True)

    def _apply_fp8(self, transformer: Any, device: Any) -> None:
        torch = self._torch
        if device.type != "cuda":
            self.speed["fp8"] = "unavailable: FP8 needs a CUDA GPU"
            logger.warning("ltx2_fp8 ignored: %s", self.speed["fp8"])
            return
        capability = torch.cuda.get_device_capability(device)
        if capability < (8, 9):
            self.speed["fp8"] = (
                f"unavailable: compute capability {capability[0]}.{capability[1]} has no FP8 "
                "(it needs 8.9 or later: Ada, Hopper, Blackwell)"
            )
            logger.warning("ltx2_fp8 ignored: %s", self.speed["fp8"])
            return
        try:
            if self.options.cpu_offload != "off":
                raise ImportError("torchao's FP8 kernels need the weights on the GPU")
            from torchao.quantization import (
                Float8DynamicActivationFloat8WeightConfig,
                PerRow,
                quantize_,
            )
        except ImportError:
            # Storage-only FP8: half the transformer's memory, bf16 matmuls, no speed-up.
            transformer.enable_layerwise_casting(
                storage_dtype=torch.float8_e4m3fn, compute_dtype=getattr(torch, self.options.dtype)
            )
            self.speed["fp8"] = "storage"
            logger.info(
                "LTX-2 transformer weights stored in FP8, computed in %s", self.options.dtype
            )
            return
        # FP8 matmuls in the transformer blocks only: the small input and output projections
        # and the embeddings carry the most sensitive values and almost none of the time.
        quantize_(
            transformer,
            Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()),
            filter_fn=lambda module, name: (
                isinstance(module, torch.nn.Linear) and "transformer_blocks" in name
            ),
        )
        self.speed["fp8"] = "torchao"
        logger.info("LTX-2 transformer blocks quantized to FP8 (torchao)")

    # ---- generation -------------------------------------------------------------------

    def plan(self, request: GenerationRequest) -> LTX2Plan:
        """The generation size, frame count and recipe for `request`."""
        options = self.options
        width, height = generation_size(
            request.width, request.height, max_side=options.max_generation_side
        )
        frames = (request.num_frames - 1 + TEMPORAL_RATIO - 1) // TEMPORAL_RATIO
        large = width * height >= LARGE_AREA
        two_stage = options.two_stage == "on" or (
            options.two_stage == "auto" and large and options.distilled
        )
        return LTX2Plan(
            width=width,
            height=height,
            num_frames=frames * TEMPORAL_RATIO + 1,
            two_stage=two_stage and self._upsampler is not None,
            tiled_decode=options.vae_tiling == "on" or (options.vae_tiling == "auto" and large),
        )

    def generate(self, request: GenerationRequest, progress: ProgressSink) -> GenerationResult:
        """Generate `request` into `scratch_dir/output.mp4`.

        Raises:
            RunCanceled: `progress.should_stop()` turned true; checked between steps.
            GenerationFailed: the model or the encoder failed (out of GPU memory included).
        """
        if not self._ready:
            raise GenerationFailed("the LTX-2 engine was not set up")
        if self._group is not None:
            return self._group.generate(request, progress)
        output = request.scratch_dir / "output.mp4"
        try:
            return self._generate(request, progress, output)
        except RunFailure:
            output.unlink(missing_ok=True)
            raise
        except _Stopped as exc:
            output.unlink(missing_ok=True)
            raise RunCanceled() from exc
        except Exception as exc:
            output.unlink(missing_ok=True)
            raise self._failure(exc, request) from exc

    def _failure(self, exc: Exception, request: GenerationRequest) -> GenerationFailed:
        torch = self._torch
        if isinstance(exc, torch.cuda.OutOfMemoryError):
            # The traceback's frames hold the run's tensors: let them go now, so that the
            # next run starts with the memory this one had, not after a garbage collection.
            exc.__traceback__ = None
            torch.cuda.empty_cache()
            return GenerationFailed(
                f"the GPU ran out of memory generating {request.width}x{request.height}, "
                f"{request.num_frames} frames; try ltx2_fp8, ltx2_two_stage, ltx2_vae_tiling "
                "or ltx2_cpu_offload"
            )
        return GenerationFailed(f"LTX-2 failed: {type(exc).__name__}: {exc}")

    def _generate(
        self, request: GenerationRequest, progress: ProgressSink, output: Path
    ) -> GenerationResult:
        from runbase.media.video import write_mp4

        torch = self._torch
        started = time.monotonic()
        in_step = progress if self._rank is None else self._rank.in_step(progress)
        _check_stop(in_step)
        kind, pipeline, plan = self._prepare(request)
        progress.progress(0.0, "encoding the prompt")
        with torch.inference_mode():
            video, audio = self._denoise(pipeline, kind, plan, request, in_step)
            if self.options.cpu_offload == "model" and kind != "text":
                # Offload hooks are installed through the text pipeline; its reset puts every
                # shared module back on the CPU, as after its own runs.
                self._pipelines["text"].maybe_free_model_hooks()
            progress.progress(_DENOISE_END, "encoding the video")
            samples = _stereo(audio) if request.audio else None
            frames = _fitted_frames(
                torch, video[0], request.width, request.height, request.num_frames, progress
            )
            write_mp4(
                output,
                frames,
                width=request.width,
                height=request.height,
                fps=request.fps,
                num_frames=request.num_frames,
                audio=samples,
                sample_rate=_audio_rate(pipeline),
                preset=self.options.preset,
                crf=self.options.crf,
            )
        progress.progress(1.0, "done")
        size = f"{plan.width}x{plan.height}"
        recipe = f"two stages ({plan.width // 2}x{plan.height // 2}, then {size})"
        progress.log(
            f"LTX-2 generated {size if not plan.two_stage else recipe}, "
            f"resized to {request.width}x{request.height}"
        )
        metadata = {
            "engine": self.name,
            "model": self.options.model if self._given_pipeline is None else "in-memory",
            "conditioning": {"text": "text", "image": "first_frame", "frames": "first_last"}[kind],
            "generation_size": [plan.width, plan.height],
            "generated_frames": plan.num_frames,
            "two_stage": plan.two_stage,
            "distilled": self.options.distilled,
            "steps": sum(steps for *_, steps in plan.stages)
            if self.options.distilled
            else self.options.steps,
            "seed": request.seed,
            "speed": dict(self.speed),
            "seconds": round(time.monotonic() - started, 3),
        }
        return GenerationResult(files=(output,), metadata=metadata)

    def follow(self, request: GenerationRequest, progress: ProgressSink) -> None:
        """Denoise `request` as a context-parallel rank other than 0: in step with rank 0,
        which alone decodes and writes the video.

        Raises:
            RunCanceled: rank 0 was asked to stop; every rank stops at the same step.
        """
        assert self._rank is not None, "only a context-parallel rank follows"
        in_step = self._rank.in_step(progress)
        try:
            _check_stop(in_step)
            kind, pipeline, plan = self._prepare(request)
            with self._torch.inference_mode():
                self._denoise(pipeline, kind, plan, request, in_step, decode=False)
        except _Stopped as exc:
            raise RunCanceled() from exc

    def _prepare(self, request: GenerationRequest) -> tuple[str, Any, LTX2Plan]:
        """The conditioning kind, its pipeline (VAE tiling set for the plan) and the plan."""
        plan = self.plan(request)
        kind = ("text", "image", "frames")[min(len(request.images), 2)]
        pipeline = self._pipelines[kind]
        if plan.tiled_decode:
            pipeline.vae.enable_tiling()
        else:
            pipeline.vae.disable_tiling()
        return kind, pipeline, plan

    def close(self) -> None:
        """Stop the context-parallel ranks, if this engine started any."""
        if self._group is not None:
            self._group.close()

    def _denoise(
        self,
        pipeline: Any,
        kind: str,
        plan: LTX2Plan,
        request: GenerationRequest,
        progress: ProgressSink,
        *,
        decode: bool = True,
    ) -> tuple[Any, Any]:
        """Run the stage(s): video (1, F, C, H, W) in [0, 1] and audio (1, channels, n);
        without `decode`, the last stage's latents (a rank that only helps denoise)."""
        from diffusers.pipelines.ltx2.utils import (
            DISTILLED_SIGMA_VALUES,
            STAGE_2_DISTILLED_SIGMA_VALUES,
        )

        options = self.options
        torch = self._torch
        stages = plan.stages if options.distilled else ((plan.width, plan.height, options.steps),)
        work = [w * h * steps for w, h, steps in stages]
        done = 0.0
        prompt = request.prompt
        if request.input.get("camera_fixed"):
            prompt = f"{prompt}\n{_STATIC_CAMERA}"
        common: dict[str, Any] = {
            "prompt": prompt,
            "num_frames": plan.num_frames,
            "frame_rate": float(request.fps),
            "generator": torch.Generator(device="cpu").manual_seed(request.seed),
            "max_sequence_length": options.max_sequence_length,
            "return_dict": False,
        }
        if options.distilled:
            common.update(_NO_GUIDANCE)
        else:
            from diffusers.pipelines.ltx2.utils import DEFAULT_NEGATIVE_PROMPT

            common["negative_prompt"] = DEFAULT_NEGATIVE_PROMPT
        latents: Any = None
        audio_latents: Any = None
        for index, (width, height, steps) in enumerate(stages):
            final = index == len(stages) - 1
            output_type = "pt" if final and decode else "latent"
            call = dict(common, width=width, height=height, output_type=output_type)
            call.update(_conditioning(kind, request.images, width, height))
            if not options.distilled:
                call["num_inference_steps"] = steps
            elif index == 0:
                call["sigmas"] = list(DISTILLED_SIGMA_VALUES)
            else:
                # Refine the upsampled latents: re-noise to the first stage-2 sigma, 3 steps.
                call["sigmas"] = list(STAGE_2_DISTILLED_SIGMA_VALUES)
                call["noise_scale"] = STAGE_2_DISTILLED_SIGMA_VALUES[0]
                call["latents"], call["audio_latents"] = latents, audio_latents
            start = _DENOISE_START + (_DENOISE_END - _DENOISE_START) * done / sum(work)
            span = (_DENOISE_END - _DENOISE_START) * work[index] / sum(work)
            call["callback_on_step_end"] = _step_callback(progress, start, span, steps)
            _check_stop(progress)
            video, audio = pipeline(**call)
            done += work[index]
            if not final:
                _check_stop(progress)
                progress.progress(round(start + span, 4), "upsampling")
                upsampler = self._upsampler
                latents = upsampler(video.to(device=upsampler.device, dtype=upsampler.dtype))
                audio_latents = audio
        return video, audio


# ---- helpers ---------------------------------------------------------------------------


class _Stopped(Exception):
    """Raised from the step callback to leave the denoising loop at once."""


def _check_choice(field: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{field} must be one of {', '.join(allowed)}; got {value!r}")


def _check_stop(progress: ProgressSink) -> None:
    if progress.should_stop():
        raise RunCanceled()


def _missing_files(reference: str, filename: str, allow_downloads: bool) -> str | None:
    """Why `filename` of `reference` (a folder or a repo id) cannot be had, or None."""
    folder = Path(reference).expanduser()
    if folder.is_dir():
        return None if (folder / filename).is_file() else f"{folder} has no {filename}"
    if not _REPO_ID.fullmatch(reference) or reference.startswith((".", "~")):
        return f"no folder {reference}"
    if allow_downloads:
        return None
    from huggingface_hub import constants, try_to_load_from_cache

    if isinstance(try_to_load_from_cache(reference, filename), str):
        return None
    return (
        f"{reference!r} is neither a local folder nor in the Hugging Face cache "
        f"({constants.HF_HUB_CACHE}); download it first (hf download {reference}) "
        "or set RUNBASE_ALLOW_DOWNLOADS=true"
    )


def _build(cls: Any, components: Mapping[str, Any]) -> Any:
    accepted = inspect.signature(cls.__init__).parameters
    return cls(**{name: value for name, value in components.items() if name in accepted})


def _conditioning(
    kind: str, images: tuple[Image.Image, ...], width: int, height: int
) -> dict[str, Any]:
    """The image arguments of `kind`'s pipeline, the images fitted to `width` x `height`.

    Fitting here (centre crop, then resize) keeps the pipeline from stretching an image of
    another aspect ratio; cropping the output to the exact size later keeps the result the
    image fitted to the output size, as docs/contract.md promises.
    """
    if kind == "text":
        return {}
    from PIL import Image as PILImage

    from runbase.media.images import fit_image

    fitted = [PILImage.fromarray(fit_image(image, width, height)) for image in images[:2]]
    if kind == "image":
        return {"image": fitted[0]}
    from diffusers.pipelines.ltx2 import LTX2VideoCondition

    return {
        "conditions": [
            LTX2VideoCondition(frames=fitted[0], index=0),
            LTX2VideoCondition(frames=fitted[1], index=-1),
        ]
    }


def _step_callback(progress: ProgressSink, start: float, span: float, steps: int) -> Any:
    """A `callback_on_step_end` that reports progress and stops the loop when told to."""

    def on_step_end(
        pipeline: Any, step: int, timestep: Any, tensors: dict[str, Any]
    ) -> dict[str, Any]:
        if progress.should_stop():
            # diffusers' own flag skips the remaining steps but would still decode the
            # whole video; raising leaves at once.
            pipeline._interrupt = True
            raise _Stopped()
        progress.progress(round(start + span * (step + 1) / steps, 4), "denoising")
        return {}

    return on_step_end


def _audio_rate(pipeline: Any) -> int:
    return int(pipeline.vocoder.config.output_sampling_rate)


def _stereo(audio: Any) -> np.ndarray:
    """The first clip's audio as float32 (2, n): mono is doubled, extra channels dropped."""
    import numpy as np

    samples = audio[0].float().cpu().numpy()
    if samples.shape[0] == 1:
        samples = np.concatenate([samples, samples])
    return np.ascontiguousarray(samples[:2], dtype=np.float32)


def _fitted_frames(
    torch: Any, video: Any, width: int, height: int, count: int, progress: ProgressSink
) -> Iterator[np.ndarray]:
    """The first `count` frames of `video` (F, C, h, w) in [0, 1], centre-cropped to the
    ratio width:height and resized to width x height, as HxWx3 uint8 arrays.

    Resizing runs on the video's device, a few frames at a time, so that a 1080p clip is
    never held as float on the CPU; a stop request is honoured between batches.
    """
    _, _, source_h, source_w = video.shape
    if source_w * height > width * source_h:
        kept = round(source_h * width / height)
        left = (source_w - kept) // 2
        video = video[:, :, :, left : left + kept]
    else:
        kept = round(source_w * height / width)
        top = (source_h - kept) // 2
        video = video[:, :, top : top + kept, :]
    reported = _DENOISE_END
    for start in range(0, count, _FRAME_CHUNK):
        _check_stop(progress)
        chunk = video[start : min(start + _FRAME_CHUNK, count)].float()
        if chunk.shape[-2:] != (height, width):
            chunk = torch.nn.functional.interpolate(
                chunk, size=(height, width), mode="bicubic", antialias=True, align_corners=False
            )
        pixels = (chunk.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1)
        yield from pixels.cpu().numpy()
        fraction = _DENOISE_END + (0.99 - _DENOISE_END) * (start + len(chunk)) / count
        if fraction - reported >= 0.05:
            progress.progress(round(fraction, 4), "encoding the video")
            reported = fraction
