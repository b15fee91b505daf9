"""`LTX2Engine`: the LTX-2 engine behind the `Engine` protocol (see the package docstring).

setup()                       once per process; the model then stays loaded
  1. torch and diffusers present and recent enough, the device there, the weights on
     disk (or downloads allowed): otherwise `EngineUnavailable` naming each problem
  2. load the pipelines and the x2 latent upsampler (loading.py), place them, apply
     the speed options (speed.py); or, context-parallel, start the ranks (group.py)
generate(request, progress)
  1. plan (plan.py): the generation size, 8k+1 frames, one stage or two, tiling
  2. denoise (denoise.py), each stage with its pipeline and images (conditioning.py)
  3. resize and centre-crop the frames to the exact output size (frames.py) and encode
     them with the audio or without through `runbase.media.video.write_mp4`
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from runbase.engines.base import GenerationRequest, GenerationResult, ProgressSink
from runbase.engines.ltx2.conditioning import conditioning_kind
from runbase.engines.ltx2.denoise import denoise
from runbase.engines.ltx2.frames import audio_rate, fitted_frames, stereo
from runbase.engines.ltx2.group import RankGroup
from runbase.engines.ltx2.loading import Loaded, load, missing_weights, place
from runbase.engines.ltx2.options import LTX2Options
from runbase.engines.ltx2.plan import LTX2Plan, make_plan
from runbase.engines.ltx2.progress import DENOISE_END, Stopped, check_stop
from runbase.engines.ltx2.requirements import missing_requirements
from runbase.engines.ltx2.speed import apply_fp8, compile_transformer
from runbase.errors import EngineUnavailable, GenerationFailed, RunCanceled, RunFailure

if TYPE_CHECKING:
    from runbase.config import Settings
    from runbase.engines.ltx2.ranks import Rank

__all__ = ["LTX2Engine"]

logger = logging.getLogger(__name__)

_TEMPORAL_TILE: Final = {"tile_sample_min_num_frames": 64, "tile_sample_stride_num_frames": 40}
"""Frame-wise decoding in runs of 64 frames overlapping by 24, as Lightricks' reference
pipelines decode (their spatial tiles, 512 px overlapping by 64, are diffusers' default)."""


class LTX2Engine:
    """LTX-2 through diffusers: text, first-frame and first+last-frame to video with audio.

    Build it with `from_settings` in production, or give it a ready `pipeline` (an
    `LTX2Pipeline` or one with the same components, such as the tiny random-weight
    pipelines of the tests) and optionally a latent `upsampler`; a given pipeline keeps
    its dtype and is only moved to the device.

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
        self.device = self.options.device if rank is None else rank.device
        """Where the model runs: the configured device, or a rank's own GPU."""
        self._group: RankGroup | None = None
        self._torch: Any = None
        self._loaded: Loaded | None = None
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
            EngineUnavailable: torch or diffusers missing or too old, no such device, no
                weights, or loading failed. The message names each missing piece.
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
        options = self.options
        problems = missing_requirements(torch, context_parallel=options.context_parallel)
        problems += [p for p in [self._missing_device()] if p]
        problems += missing_weights(
            options,
            given_pipeline=self._given_pipeline is not None,
            given_upsampler=self._upsampler is not None,
        )
        if problems:
            raise EngineUnavailable("LTX-2 cannot start: " + "; ".join(problems))
        if options.context_parallel > 1 and self._rank is None:
            self._group = RankGroup(
                options, pipeline=self._given_pipeline, upsampler=self._upsampler
            )
            self.speed = self._group.start()
            self._ready = True
            return
        started = time.monotonic()
        try:
            self._loaded = load(torch, options, self._given_pipeline, self._upsampler)
            self._upsampler = self._loaded.upsampler
            if self._rank is not None:
                self._rank.enable(self._loaded.pipelines["text"])
            self._apply_speed_options(self._loaded)
        except EngineUnavailable:
            raise
        except Exception as exc:
            raise EngineUnavailable(
                f"loading LTX-2 from {options.model!r} failed: {type(exc).__name__}: {exc}"
            ) from exc
        self._ready = True
        logger.info("LTX-2 ready on %s in %.1f s", self.device, time.monotonic() - started)

    def _missing_device(self) -> str | None:
        torch, device = self._torch, self.device
        if device == "cpu":
            return None
        if not torch.cuda.is_available():
            build = " (this torch is a CPU-only build)" if torch.version.cuda is None else ""
            return (
                f"no CUDA device: torch {torch.__version__}{build} sees no GPU; check the "
                "driver and CUDA_VISIBLE_DEVICES"
            )
        count = torch.cuda.device_count()
        if int(device.partition(":")[2] or 0) >= count:
            return f"no device {device}: torch sees {count} GPU(s)"
        if self.options.context_parallel > count:
            return (
                f"context_parallel {self.options.context_parallel} needs as many GPUs: torch "
                f"sees {count}; check CUDA_VISIBLE_DEVICES"
            )
        return None

    def _apply_speed_options(self, loaded: Loaded) -> None:
        torch, options = self._torch, self.options
        transformer = loaded.owner.transformer
        self.speed = {
            "dtype": str(transformer.dtype).removeprefix("torch."),
            "distilled": options.distilled,
            "cpu_offload": options.cpu_offload,
            "fp8": "off",
            "compile": options.compile,
            "two_stage": options.two_stage if loaded.upsampler is not None else "off",
            "context_parallel": options.context_parallel,
        }
        place(torch, options, self.device, loaded)
        if options.fp8:
            self.speed["fp8"] = apply_fp8(
                torch, transformer, torch.device(self.device), offload=options.cpu_offload != "off"
            )
        if options.compile:
            compile_transformer(transformer)

    # ---- generation -------------------------------------------------------------------

    def plan(self, request: GenerationRequest) -> LTX2Plan:
        """The generation size, frame count and recipe for `request`."""
        return make_plan(self.options, request, upsampler=self._upsampler is not None)

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
        except Stopped as exc:
            output.unlink(missing_ok=True)
            raise RunCanceled() from exc
        except Exception as exc:
            output.unlink(missing_ok=True)
            raise self._failure(exc, request) from exc
        finally:
            self._free_offloaded()

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

        torch, loaded = self._torch, self._loaded
        assert loaded is not None
        started = time.monotonic()
        in_step = progress if self._rank is None else self._rank.in_step(progress)
        check_stop(in_step)
        kind, plan = self._prepare(request, progress)
        progress.progress(0.0, "encoding the prompt")
        with torch.inference_mode():
            video, audio = denoise(
                torch,
                loaded.pipelines,
                loaded.upsampler,
                self.options,
                plan,
                request,
                in_step,
                kind=kind,
            )
            progress.progress(DENOISE_END, "encoding the video")
            write_mp4(
                output,
                fitted_frames(
                    torch, video[0], request.width, request.height, request.num_frames, progress
                ),
                width=request.width,
                height=request.height,
                fps=request.fps,
                num_frames=request.num_frames,
                audio=stereo(audio) if request.audio else None,
                sample_rate=audio_rate(loaded.owner),
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
        return GenerationResult(
            files=(output,), metadata=self._metadata(request, kind, plan, started)
        )

    def _metadata(
        self, request: GenerationRequest, kind: str, plan: LTX2Plan, started: float
    ) -> dict[str, Any]:
        options = self.options
        return {
            "engine": self.name,
            "model": options.model if self._given_pipeline is None else "in-memory",
            "conditioning": {"text": "text", "image": "first_frame", "frames": "first_last"}[kind],
            "generation_size": [plan.width, plan.height],
            "generated_frames": plan.num_frames,
            "two_stage": plan.two_stage,
            "tiled_decode": plan.tiled_decode,
            "distilled": options.distilled,
            "steps": sum(steps for *_, steps in plan.stages)
            if options.distilled
            else options.steps,
            "seed": request.seed,
            "speed": dict(self.speed),
            "seconds": round(time.monotonic() - started, 3),
        }

    def follow(self, request: GenerationRequest, progress: ProgressSink) -> None:
        """Denoise `request` as a context-parallel rank other than 0: in step with rank 0,
        which alone decodes and writes the video.

        Raises:
            RunCanceled: rank 0 was asked to stop; every rank stops at the same step.
        """
        assert self._rank is not None and self._loaded is not None, "only a set-up rank follows"
        in_step = self._rank.in_step(progress)
        try:
            check_stop(in_step)
            kind, plan = self._prepare(request, progress)
            with self._torch.inference_mode():
                denoise(
                    self._torch,
                    self._loaded.pipelines,
                    self._loaded.upsampler,
                    self.options,
                    plan,
                    request,
                    in_step,
                    kind=kind,
                    decode=False,
                )
        except Stopped as exc:
            raise RunCanceled() from exc
        finally:
            self._free_offloaded()

    def _prepare(self, request: GenerationRequest, progress: ProgressSink) -> tuple[str, LTX2Plan]:
        """The conditioning kind and the plan, with the VAE's tiling set for it; a plan that
        differs from what the options asked for says so in the run's logs."""
        assert self._loaded is not None
        plan = self.plan(request)
        if plan.note:
            progress.log(f"LTX-2 {plan.note}")
            logger.warning("run %s %s", request.run_id, plan.note)
        vae = self._loaded.owner.vae
        if plan.tiled_decode:
            vae.enable_tiling(**_TEMPORAL_TILE)
        else:
            vae.disable_tiling()
        vae.use_framewise_decoding = plan.tiled_decode
        return conditioning_kind(request.images), plan

    def _free_offloaded(self) -> None:
        """With model offload, every model back in CPU memory after a run, as diffusers
        leaves them after a pipeline call."""
        if self._loaded is not None and self.options.cpu_offload == "model":
            self._loaded.owner.maybe_free_model_hooks()

    def close(self) -> None:
        """Stop the context-parallel ranks, if this engine started any."""
        if self._group is not None:
            self._group.close()
