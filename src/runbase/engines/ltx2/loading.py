"""Finding and loading the LTX-2 weights: what is missing, the pipelines, the upsampler.

One set of modules is shared by the three pipelines (text, first frame, first and last
frame), so no weight is held twice. With model offload the hooks are installed on a fourth
pipeline object that is never called (`Loaded.owner`): diffusers puts every model back on
the CPU at the end of each pipeline call made through the object holding the hooks, and the
two-stage recipe makes two calls; the engine frees them once, after the whole run.
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from runbase.engines.ltx2.options import LTX2Options

__all__ = ["Loaded", "load", "missing_weights", "place"]

logger = logging.getLogger(__name__)

# "owner/name" as the Hugging Face Hub spells repository ids.
_REPO_ID: Final = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_UNUSED: Final = {"prompt_enhancer": None, "processor": None, "duration_head": None}
"""Optional components the engine never calls (it writes no prompts and always sets the
frame count): not loaded, so that they take neither memory nor load time."""


@dataclass
class Loaded:
    """The pipelines of one engine and what they share."""

    owner: Any
    """The pipeline that holds the offload hooks and the shared modules; never called."""
    pipelines: dict[str, Any]
    """"text" (LTX2Pipeline), "image" (LTX2ImageToVideoPipeline) and "frames" (the
    condition pipeline that places keyframes on pixel frames)."""
    upsampler: Any
    """The x2 latent upsampler, or None: one stage only."""


def missing_weights(
    options: LTX2Options, *, given_pipeline: bool, given_upsampler: bool
) -> list[str]:
    """Why the weights (or the upsampler the options name) cannot be had; empty: they can."""
    problems = []
    if not given_pipeline:
        missing = _missing_files(options.model, "model_index.json", options.allow_downloads)
        if missing:
            problems.append(f"LTX-2 weights: {missing}")
    if given_upsampler or options.two_stage == "off":
        return problems
    if options.upsampler is not None:
        # An upsampler the operator named must be there, whatever "auto" would do.
        missing = _missing_files(options.upsampler, "config.json", options.allow_downloads)
        if missing:
            problems.append(f"latent upsampler: {missing}")
    elif options.two_stage == "on" and _upsampler_location(options, given_pipeline) is None:
        problems.append(
            "two_stage is 'on' but there is no latent upsampler: set RUNBASE_LTX2_UPSAMPLER "
            f"or add a latent_upsampler/ folder to {options.model}"
        )
    return problems


def load(torch: Any, options: LTX2Options, base: Any = None, upsampler: Any = None) -> Loaded:
    """The pipelines (from `base`, or loaded from `options.model`) and the upsampler."""
    from diffusers import (
        FlowMatchEulerDiscreteScheduler,
        LTX2ImageToVideoPipeline,
        LTX2Pipeline,
    )

    from runbase.engines.ltx2.keyframes import KeyframeConditionPipeline

    dtype = getattr(torch, options.dtype)
    given_pipeline = base is not None
    if base is None:
        base = LTX2Pipeline.from_pretrained(
            options.model, dtype=dtype, local_files_only=not options.allow_downloads, **_UNUSED
        )
    if upsampler is None and options.two_stage != "off":
        upsampler = _load_upsampler(options, dtype, given_pipeline=given_pipeline)
    if options.distilled:
        # The distilled sigmas are used as they are, as in Lightricks' reference
        # pipelines: the checkpoints' schedulers would shift them by resolution.
        base.scheduler = FlowMatchEulerDiscreteScheduler.from_config(
            base.scheduler.config, use_dynamic_shifting=False, shift_terminal=None, shift=1.0
        )
    components = dict(base.components)
    pipelines = {
        "text": _build(LTX2Pipeline, components),
        "image": _build(LTX2ImageToVideoPipeline, components),
        "frames": _build(KeyframeConditionPipeline, components),
    }
    for pipeline in pipelines.values():
        pipeline.set_progress_bar_config(disable=True)
    return Loaded(owner=base, pipelines=pipelines, upsampler=upsampler)


def place(torch: Any, options: LTX2Options, device: str, loaded: Loaded) -> None:
    """Put the models on `device`, or install the CPU offload the options ask for."""
    target = torch.device(device)
    if options.cpu_offload == "model":
        loaded.owner.enable_model_cpu_offload(device=target)
    elif options.cpu_offload == "sequential":
        loaded.owner.enable_sequential_cpu_offload(device=target)
    else:
        loaded.owner.to(target)
    if loaded.upsampler is not None:
        loaded.upsampler.to(target)
        loaded.upsampler.eval()


def _upsampler_location(
    options: LTX2Options, given_pipeline: bool
) -> tuple[str, str | None] | None:
    """(reference, subfolder) of the latent upsampler, or None when there is none."""
    if options.upsampler is not None:
        return options.upsampler, None
    if given_pipeline:
        return None
    if _missing_files(options.model, "latent_upsampler/config.json", options.allow_downloads):
        return None
    return options.model, "latent_upsampler"


def _load_upsampler(options: LTX2Options, dtype: Any, *, given_pipeline: bool) -> Any:
    """The latent upsampler, or None when "auto" finds none (one stage it is, then: each
    run that would have used two stages says so in its logs)."""
    location = _upsampler_location(options, given_pipeline)
    if location is None:
        logger.warning(
            "no latent upsampler in %s: 1080p runs are generated in one stage", options.model
        )
        return None
    from diffusers.pipelines.ltx2 import LTX2LatentUpsamplerModel

    reference, subfolder = location
    extra = {} if subfolder is None else {"subfolder": subfolder}
    try:
        return LTX2LatentUpsamplerModel.from_pretrained(
            reference, dtype=dtype, local_files_only=not options.allow_downloads, **extra
        )
    except Exception as exc:
        # Only "auto" with the model's own subfolder gets here without a check: with
        # downloads allowed, whether the repository has one is known only by trying.
        if options.two_stage == "on" or options.upsampler is not None:
            raise
        logger.warning("no latent upsampler (%s): 1080p runs use one stage", exc)
        return None


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
        f"({constants.HF_HUB_CACHE}); download it first (hf download {reference}; a gated "
        "repository such as Lightricks/LTX-2.5-Diffusers needs its licence accepted on its "
        "Hugging Face page and hf auth login) or set RUNBASE_ALLOW_DOWNLOADS=true"
    )


def _build(cls: Any, components: Mapping[str, Any]) -> Any:
    accepted = inspect.signature(cls.__init__).parameters
    return cls(**{name: value for name, value in components.items() if name in accepted})
