"""`LTX2Options`: how the LTX-2 engine loads and runs the model, checked when it is built.

Production values come from `Settings.ltx2_*` (`from_settings`); tests build them directly.
Every combination that cannot work is refused here, at configuration time, with the setting
to change, rather than failing on the GPU later.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from runbase.config import Settings

__all__ = ["DEFAULT_MODEL", "SIZE_MULTIPLE", "TEMPORAL_RATIO", "LTX2Options"]

DEFAULT_MODEL: Final = "Lightricks/LTX-2.5-Diffusers"
SIZE_MULTIPLE: Final = 64
"""Generation sides are multiples of 64: the VAE needs 32, and the two-stage recipe halves
the size first."""
TEMPORAL_RATIO: Final = 8
"""The video VAE packs 8 frames into one latent frame after the first: frames = 8k + 1."""

_DTYPES: Final = ("bfloat16", "float16", "float32")
_SWITCHES: Final = ("auto", "on", "off")
_OFFLOADS: Final = ("off", "model", "sequential")
_PRESETS: Final = ("superfast", "veryfast", "faster", "fast", "medium", "slow")
_DEVICE: Final = re.compile(r"cpu|cuda(:\d+)?")


@dataclass(frozen=True, kw_only=True)
class LTX2Options:
    """How the engine loads and runs LTX-2; production values come from `Settings.ltx2_*`."""

    model: str = DEFAULT_MODEL
    """Weights in diffusers layout: a local folder, or a Hugging Face repo id in the cache."""
    upsampler: str | None = None
    """The x2 latent upsampler (folder or repo id); None: `model`'s `latent_upsampler/`."""
    device: str = "cuda"
    """Torch device; one worker per GPU through CUDA_VISIBLE_DEVICES. "cpu" is for tests.
    With `context_parallel` > 1 the ranks take cuda:0 .. cuda:N-1 (or all "cpu")."""
    dtype: str = "bfloat16"
    """Precision the weights are loaded in: bfloat16, float16 or float32."""
    distilled: bool = True
    """8 steps on the distilled sigmas with guidance 1.0; False: `steps` guided steps."""
    steps: int = 30
    """Denoising steps when not distilled."""
    fp8: bool = False
    """FP8 transformer weights where the GPU has FP8 (compute capability 8.9 or later);
    needs `dtype` bfloat16, the precision the FP8 kernels take and give back."""
    compile: bool = False
    """torch.compile the transformer's repeated blocks (slow first run, faster steps)."""
    vae_tiling: str = "auto"
    """Decode in spatial and temporal tiles: "auto" (large or long generations), "on", "off"."""
    cpu_offload: str = "off"
    """"off", "model" (one model on the GPU at a time) or "sequential" (layer by layer)."""
    two_stage: str = "auto"
    """Half size, x2 latent upsampler, refine: "auto" (1080p-sized), "on", "off"."""
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
    rank processes on cuda:0 .. cuda:N-1; engines/ltx2/group.py); 1: off."""
    parallel_timeout_s: float = 300.0
    """How long a context-parallel rank waits for the others in a collective before failing."""

    def __post_init__(self) -> None:
        _check_choice("dtype", self.dtype, _DTYPES)
        _check_choice("vae_tiling", self.vae_tiling, _SWITCHES)
        _check_choice("cpu_offload", self.cpu_offload, _OFFLOADS)
        _check_choice("two_stage", self.two_stage, _SWITCHES)
        _check_choice("preset", self.preset, _PRESETS)
        if not _DEVICE.fullmatch(self.device):
            raise ValueError(f"device must be 'cuda', 'cuda:N' or 'cpu'; got {self.device!r}")
        if self.steps < 1:
            raise ValueError(f"steps must be at least 1, got {self.steps}")
        if self.max_generation_side is not None and self.max_generation_side < SIZE_MULTIPLE:
            raise ValueError(
                f"max_generation_side must be at least {SIZE_MULTIPLE}, "
                f"got {self.max_generation_side}"
            )
        if self.two_stage == "on" and not self.distilled:
            raise ValueError("two_stage 'on' refines with the distilled schedule: needs distilled")
        if self.fp8 and self.dtype != "bfloat16":
            # torchao's row-wise FP8 matmuls take bf16 weights and activations; other
            # precisions fail in the kernel, on the GPU, at the first run.
            raise ValueError(
                f"fp8 (RUNBASE_LTX2_FP8) needs dtype bfloat16, got {self.dtype!r}: set "
                "RUNBASE_LTX2_DTYPE=bfloat16 or turn FP8 off"
            )
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


def _check_choice(field: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{field} must be one of {', '.join(allowed)}; got {value!r}")
