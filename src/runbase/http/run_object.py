"""The run object as every surface shows it (the runs API, the Ark-compatible task, the
admin console, webhooks, events): the row, with its output files and the images stored at
creation as links signed anew on every read (`BlobStore.signed_url`).
"""

from __future__ import annotations

from typing import Any

from runbase.core import runs
from runbase.core.run_view import Run
from runbase.http.deps import Services
from runbase.http.schemas import run_public
from runbase.storage import inputs

__all__ = ["public_run", "run_read", "run_urls", "shown_input"]


def run_urls(services: Services, run: Run, base_url: str) -> list[str] | None:
    """Signed output URLs of a succeeded run (signed anew on every read), else None."""
    if run.status != runs.RunStatus.SUCCEEDED or run.output_keys is None:
        return None
    base = services.settings.public_url or base_url
    ttl = services.settings.file_url_ttl_seconds
    return [
        services.blobs.signed_url(key, base_url=base, ttl_seconds=ttl) for key in run.output_keys
    ]


def shown_input(services: Services, run: Run, base_url: str) -> dict[str, Any]:
    """The run's input as the run object shows it: images stored at creation as signed
    links (signed anew on every read, like outputs)."""
    base = services.settings.public_url or base_url
    ttl = services.settings.file_url_ttl_seconds
    return inputs.shown_input(
        run.input, lambda key: services.blobs.signed_url(key, base_url=base, ttl_seconds=ttl)
    )


def public_run(services: Services, run: Run, base_url: str) -> dict[str, Any]:
    """The run object of creates and changes."""
    return run_public(run, run_urls(services, run, base_url), shown_input(services, run, base_url))


def run_read(services: Services, run: Run, base_url: str) -> dict[str, Any]:
    """The run object of reads: with `queuePosition`."""
    answer = public_run(services, run, base_url)
    answer["queuePosition"] = run.queue_position
    return answer
