"""The LTX-2 engine: video with its sound track from LTX-2, through diffusers, on your GPUs.

LTX-2 (Lightricks) generates video and stereo audio together, from text, from a first frame,
or from a first and a last frame, at any size that is a multiple of 32 and up to 20 s. It is
the open model closest to seedance-1.5-pro, so it serves that model id on operators' GPUs.
See docs/ltx2.md for settings, speed options and the licence.

    options.py        LTX2Options: the settings, refused at build time when they cannot work
    requirements.py   the library versions the engine needs
    loading.py        the weights: what is missing, the pipelines, the latent upsampler
    speed.py          FP8 and torch.compile
    plan.py           per request: generation size, frame count, one stage or two, tiling
    conditioning.py   per stage: which pipeline, which images
    keyframes.py      the last image on the last frame (diffusers counts in latent frames)
    denoise.py        the stages: prompt once, denoise, upsample, refine, decode
    progress.py       progress reports and stopping between steps
    frames.py         frames to the exact output size, stereo audio
    engine.py         LTX2Engine, the `Engine` the workers call
    group.py          context parallelism, the engine's side: the rank processes
    ranks.py          context parallelism inside a rank: Ulysses attention, stopping
    rank_process.py   a rank process (`python -m runbase.engines.ltx2.rank_process`)
    wire.py           messages between the engine and its ranks

torch and diffusers are imported in `setup()` and below, never at import: the server
process loads this package's names only, and must never import torch.
"""

from __future__ import annotations

from runbase.engines.ltx2.engine import LTX2Engine
from runbase.engines.ltx2.options import LTX2Options
from runbase.engines.ltx2.plan import LTX2Plan, generation_size

__all__ = ["LTX2Engine", "LTX2Options", "LTX2Plan", "generation_size"]
