"""Engines: the backends that generate runs, behind the `Engine` protocol (see `base`).

Engines are named in `Settings.engines`, either by a built-in name or by an import reference
`package.module:Class`. They are imported only when loaded, so the server process never
imports torch or a provider SDK.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from runbase.engines.base import Engine, GenerationRequest, GenerationResult, ProgressSink

if TYPE_CHECKING:
    from runbase.config import Settings

__all__ = ["BUILTIN_ENGINES", "Engine", "GenerationRequest", "GenerationResult", "ProgressSink"]

BUILTIN_ENGINES = {
    "preview": "runbase.engines.preview:PreviewEngine",
    "ltx2": "runbase.engines.ltx2:LTX2Engine",
}
"""Compute engines. Providers (ark, ...) are in `runbase.providers`."""


def load_engine(reference: str, settings: Settings) -> Engine:
    """Build (but not set up) the engine named by `reference`.

    A class with a `from_settings` classmethod is built from the settings; any other is
    called without arguments.
    """
    target = BUILTIN_ENGINES.get(reference, reference)
    module_name, _, class_name = target.partition(":")
    if not class_name:
        raise ValueError(
            f"unknown engine {reference!r}: use one of {', '.join(BUILTIN_ENGINES)} "
            "or an import reference 'package.module:Class'"
        )
    factory = getattr(importlib.import_module(module_name), class_name)
    if hasattr(factory, "from_settings"):
        engine: Engine = factory.from_settings(settings)
    else:
        engine = factory()
    return engine
