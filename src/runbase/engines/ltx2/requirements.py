"""The library versions the LTX-2 engine needs, checked before anything is loaded.

The floors are those of the `ltx2` extra in pyproject.toml (a test keeps the two equal):

- diffusers 0.42.1: the LTX-2 pipelines as this engine calls them;
- transformers 5.10.1: the first release with both Gemma 4 classes, which diffusers'
  LTX-2 pipelines import at module level (5.9.0 has `Gemma4ForConditionalGeneration` but
  not `Gemma4UnifiedForConditionalGeneration`; checked on the published wheels);
- torch 2.6: the first release with `torch.accelerator.device_count()`, which diffusers'
  context parallelism calls (https://pytorch.org/docs/2.6/_modules/torch/accelerator.html);
- accelerate 1.0: CPU offload.

A machine that installed older versions by hand gets one line naming the upgrade, instead
of an ImportError from inside diffusers.
"""

from __future__ import annotations

import importlib
from typing import Any, Final

__all__ = ["FLOORS", "TRANSFORMERS_NAMES", "missing_requirements"]

FLOORS: Final = {
    "torch": "2.6",
    "diffusers": "0.42.1",
    "transformers": "5.10.1",
    "accelerate": "1.0",
}
TRANSFORMERS_NAMES: Final = (
    "Gemma3ForConditionalGeneration",
    "Gemma4ForConditionalGeneration",
    "Gemma4UnifiedForConditionalGeneration",
    "GemmaTokenizer",
    "GemmaTokenizerFast",
    "ProcessorMixin",
)
"""What diffusers' LTX-2 pipelines import from transformers, all there from 5.10.1 on."""
DIFFUSERS_NAMES: Final = ("LTX2Pipeline", "LTX2ImageToVideoPipeline", "LTX2ConditionPipeline")


def missing_requirements(torch: Any, *, context_parallel: int) -> list[str]:
    """One line per library that is too old for what this engine will use."""
    problems = []
    for package, names in (("transformers", TRANSFORMERS_NAMES), ("diffusers", DIFFUSERS_NAMES)):
        module = importlib.import_module(package)
        missing = [name for name in names if not _has(module, name)]
        if missing:
            problems.append(
                f"{package} {getattr(module, '__version__', '?')} lacks {', '.join(missing)}: "
                f"pip install '{package}>={FLOORS[package]}'"
            )
    if context_parallel > 1 and not _has(getattr(torch, "accelerator", None), "device_count"):
        problems.append(
            f"context parallelism needs torch.accelerator.device_count(), which torch "
            f"{torch.__version__} lacks: install torch>={FLOORS['torch']}"
        )
    return problems


def _has(module: Any, name: str) -> bool:
    # dir() of diffusers' and transformers' lazy modules lists the names they export
    # without importing them (torch models); a few aliases are resolved only on access.
    if module is None or name in dir(module):
        return module is not None
    try:
        return getattr(module, name, None) is not None
    except Exception:  # a lazy module whose submodule fails to import
        return False
