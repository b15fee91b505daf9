"""Which engine host a worker gets: `open_engine(settings)` picks the one `RUNBASE_EXECUTOR`
names.

    local  executor.EngineProcess   the engine in a spawned child process (the default)
    ray    ray_executor.RayEngine   the engine in a Ray actor

Both are `executor.EngineHost`s; this module sits above them, so neither imports it.
"""

from __future__ import annotations

from runbase.config import Settings
from runbase.dispatch.executor import EngineHost, EngineProcess

__all__ = ["open_engine"]


def open_engine(settings: Settings) -> EngineHost:
    """The engine host that `settings.executor` names, not started yet."""
    if settings.executor == "ray":
        # Here and not at the top: Ray is the optional `ray` extra, loaded only when asked.
        from runbase.dispatch.ray_executor import RayEngine

        return RayEngine(settings)
    return EngineProcess(settings)
