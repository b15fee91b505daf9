"""What `RUNBASE_ENGINES` means: a route of stations, checked at start, with a breaker per
provider.

The list is read left to right. Compute engines (preview, ltx2, `module:Class` engines)
form one station, at the place of the first of them, and keep today's rule: the first of
them that starts serves the runs. Providers are stations of their own. So:

    ark,fal,runbase    providers only: each run tries ark, then fal, then runbase
                       (failover rules in `dispatch.gateway`)
    ark,preview        ark first; a run that ark refuses or loses, or that comes while
                       ark's breaker is open, is made by the preview engine instead
    ltx2,preview       compute only, as before: LTX-2 where it starts, else preview
    ltx2,ark           LTX-2 where it starts; where no compute engine starts (no GPU),
                       ark serves the runs. Providers after the compute station are a
                       start-up fallback, never a per-run one: a machine with a working
                       compute engine never forwards runs.
    preview,ark        the same rule: preview always starts, so ark is never used (put a
                       provider first to prefer it)

`check_engines` is the fail-fast check at start: no I/O, no engine set-up, only what can
be known from the settings (a provider without its key, an unknown name, a missing extra).
A list where nothing can start stops `runbase serve` with the reasons.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

from runbase.engines import BUILTIN_ENGINES
from runbase.providers import is_provider, load_provider

if TYPE_CHECKING:
    from runbase.config import Settings

# What each built-in compute engine needs installed, beyond runbase's own dependencies.
_COMPUTE_NEEDS = {"ltx2": ("torch", "diffusers")}


@dataclass(frozen=True)
class Route:
    """The stations of `RUNBASE_ENGINES`, in order."""

    providers: tuple[str, ...] = ()
    """Providers before the compute station: tried in order for every run."""
    compute: tuple[str, ...] = ()
    """The compute station's engines (the first that starts serves), or none."""
    fallback: tuple[str, ...] = ()
    """Providers after the compute station: used only where no compute engine starts."""

    @classmethod
    def parse(
        cls, engines: list[str], *, provider_test: Callable[[str], bool] = is_provider
    ) -> Route:
        providers: list[str] = []
        compute: list[str] = []
        fallback: list[str] = []
        for reference in engines:
            if provider_test(reference):
                (fallback if compute else providers).append(reference)
            else:
                compute.append(reference)
        return cls(tuple(providers), tuple(compute), tuple(fallback))

    def stations(self, *, compute_usable: bool | None) -> tuple[str | None, ...]:
        """The route as it is now: provider names, and None for the compute station.

        `compute_usable` is False once the compute station failed to start, None while
        nobody knows yet.
        """
        if not self.compute:
            return self.providers
        if compute_usable is False:
            return (*self.providers, *self.fallback)
        return (*self.providers, None)

    def all_providers(self) -> tuple[str, ...]:
        return (*self.providers, *self.fallback)

    @property
    def needs_compute_probe(self) -> bool:
        """Whether the compute station must be started at once to know the route (a
        start-up fallback hangs on it)."""
        return bool(self.compute and self.fallback)


def check_engines(settings: Settings) -> dict[str, str | None]:
    """Each entry of `settings.engines` and why it cannot start (None: it may)."""
    found: dict[str, str | None] = {}
    for reference in settings.engines:
        found[reference] = _problem(reference, settings)
    return found


def _problem(reference: str, settings: Settings) -> str | None:
    if is_provider(reference):
        try:
            return load_provider(reference, settings).configuration_problem()
        except Exception as exc:  # a provider class that cannot even be built
            return f"the provider {reference!r} cannot be built: {type(exc).__name__}"
    if reference in BUILTIN_ENGINES:
        missing = [m for m in _COMPUTE_NEEDS.get(reference, ()) if not _importable(m)]
        if missing:
            return (
                f"the {reference} engine needs {', '.join(missing)} "
                f"(pip install 'runbase[{reference}]')"
            )
        return None
    module_name, _, class_name = reference.partition(":")
    if not class_name:
        known = ", ".join(sorted({*BUILTIN_ENGINES, *_builtin_providers()}))
        return f"unknown engine {reference!r}: use one of {known}, or 'package.module:Class'"
    if not _importable(module_name):
        return f"the module of {reference!r} cannot be found"
    return None


def _builtin_providers() -> tuple[str, ...]:
    from runbase.providers import BUILTIN_PROVIDERS

    return tuple(BUILTIN_PROVIDERS)


def _importable(module_name: str) -> bool:
    try:
        return importlib.util.find_spec(module_name) is not None
    except (ImportError, ValueError):
        return False


def describe_problems(problems: dict[str, str | None]) -> str:
    """One line per entry that cannot start."""
    return "; ".join(f"{problem}" for problem in problems.values() if problem)


# ---- the circuit breaker --------------------------------------------------------------


class BreakerState(StrEnum):
    CLOSED = "closed"  # the provider takes runs
    OPEN = "open"  # skipped until the cool-down ends
    HALF_OPEN = "half_open"  # one run probes it; its outcome closes or reopens the breaker


@dataclass
class Breaker:
    """Skips a provider that failed `threshold` runs in a row, for `cooldown_s`.

    Only the provider's own faults count (`NotAccepted`, `TaskFailed`); a content refusal
    or an unsupported input says nothing about the provider's health.
    """

    threshold: int = 5
    cooldown_s: float = 30.0
    clock: Callable[[], float] = time.monotonic
    failures: int = 0
    opened_at: float | None = None
    probing: bool = False
    trips: int = field(default=0)

    @property
    def state(self) -> BreakerState:
        if self.opened_at is None:
            return BreakerState.CLOSED
        if self.clock() - self.opened_at < self.cooldown_s:
            return BreakerState.OPEN
        return BreakerState.HALF_OPEN

    def allows(self) -> bool:
        """Whether a new run may be sent now (a half-open breaker lets one probe through)."""
        state = self.state
        return state is BreakerState.CLOSED or (
            state is BreakerState.HALF_OPEN and not self.probing
        )

    def begin(self) -> None:
        """A run is being sent: in the half-open state it is the probe."""
        if self.state is BreakerState.HALF_OPEN:
            self.probing = True

    def succeeded(self) -> None:
        self.failures, self.opened_at, self.probing = 0, None, False

    def failed(self) -> None:
        self.failures += 1
        if self.probing or (self.opened_at is None and self.failures >= self.threshold):
            self.opened_at = self.clock()
            self.trips += 1
        self.probing = False

    def neutral(self) -> None:
        """The run ended in a way that says nothing about the provider (the user's fault)."""
        self.probing = False
