"""Providers: services that generate runs on their own machines, behind `Provider` (`base`).

`RUNBASE_ENGINES` names compute engines (`runbase.engines`) and providers side by side;
`is_provider` tells them apart. A provider is named by a built-in name or by an import
reference `package.module:Class` whose class has `submit` and `poll`. Providers are
imported only when loaded.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from runbase.providers.base import (
    AttemptState,
    CallbackRequest,
    ContentRefused,
    Finished,
    InputUnsupported,
    NotAccepted,
    Output,
    PacedProvider,
    Pacing,
    Provider,
    ProviderFailure,
    ProviderJob,
    RunLog,
    Running,
    SubmitUncertain,
    TaskFailed,
    TokenPrices,
    video_tokens,
)

if TYPE_CHECKING:
    from runbase.config import Settings

__all__ = [
    "BUILTIN_PROVIDERS",
    "AttemptState",
    "CallbackRequest",
    "ContentRefused",
    "Finished",
    "InputUnsupported",
    "NotAccepted",
    "Output",
    "PacedProvider",
    "Pacing",
    "Provider",
    "ProviderFailure",
    "ProviderJob",
    "RunLog",
    "Running",
    "SubmitUncertain",
    "TaskFailed",
    "TokenPrices",
    "is_provider",
    "load_provider",
    "video_tokens",
]

BUILTIN_PROVIDERS = {
    "ark": "runbase.providers.ark:ArkProvider",
    "fal": "runbase.providers.fal:FalProvider",
    "replicate": "runbase.providers.replicate:ReplicateProvider",
    "runbase": "runbase.providers.runbase:RunbaseProvider",
}


def _factory(reference: str) -> object:
    target = BUILTIN_PROVIDERS.get(reference, reference)
    module_name, _, class_name = target.partition(":")
    if not class_name:
        raise ValueError(f"{reference!r} is not a provider")
    return getattr(importlib.import_module(module_name), class_name)


def is_provider(reference: str) -> bool:
    """True for a built-in provider's name, or an import reference to a provider class.

    Built-in compute engines and unknown names are not providers; an import reference is
    imported to find out (a provider's module is light: no torch, no child process).
    """
    if reference in BUILTIN_PROVIDERS:
        return True
    if ":" not in reference:
        return False
    try:
        factory = _factory(reference)
    except (ImportError, AttributeError, ValueError):
        return False
    return all(hasattr(factory, method) for method in ("submit", "poll", "result"))


def load_provider(reference: str, settings: Settings) -> Provider:
    """Build (without starting) the provider named by `reference`.

    A class with a `from_settings` classmethod is built from the settings; any other is
    called without arguments.
    """
    factory = _factory(reference)
    if hasattr(factory, "from_settings"):
        provider: Provider = factory.from_settings(settings)
    else:
        provider = factory()  # type: ignore[operator]
    return provider
