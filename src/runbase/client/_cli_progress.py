"""How `runbase generate` shows a run's progress: live bars on a terminal, plain lines in
logs and pipes."""

from __future__ import annotations

from pathlib import Path

import typer
from rich import filesize
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)

from runbase.client._models import Run, RunStatus


def format_usd(micros: int) -> str:
    """Micro-USD as dollars: 96423 -> "$0.096423" (trailing zeros dropped)."""
    return f"${micros / 1_000_000:.6f}".rstrip("0").rstrip(".")


class PlainReport:
    """Line-by-line progress for logs and pipes: one line per change, no escape codes."""

    def __init__(self, *, quiet: bool) -> None:
        self._quiet = quiet
        self._last: tuple[RunStatus, int] | None = None

    def __enter__(self) -> PlainReport:
        return self

    def __exit__(self, *_: object) -> None:
        pass

    def _say(self, line: str) -> None:
        if not self._quiet:
            typer.echo(line)

    def show_created(self, run: Run) -> None:
        self._say(f"{run.id} created: {run.model}, cost {format_usd(run.cost_micro_usd)}")

    def show_update(self, run: Run) -> None:
        # Progress in steps of 10 %, so a log gets a handful of lines, not one per poll.
        step = int((run.progress or 0.0) * 10) if run.status == RunStatus.PROCESSING else 0
        if self._last != (run.status, step):
            self._last = (run.status, step)
            suffix = f" {step * 10}%" if run.status == RunStatus.PROCESSING else ""
            self._say(f"{run.id} {run.status}{suffix}")

    def show_download(self, done: int, total: int | None) -> None:
        pass

    def show_saved(self, run: Run, path: Path) -> None:
        self._say(f"saved {path} ({path.stat().st_size:,} bytes)")


class LiveReport:
    """A live progress display for a terminal: queue, rendering, download."""

    def __init__(self, console: Console) -> None:
        self._console = console
        self._progress = Progress(
            TextColumn("[bold]{task.description:<12}"),
            BarColumn(bar_width=36),
            TaskProgressColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=console,
        )
        self._queue: TaskID | None = None
        self._render: TaskID | None = None
        self._download: TaskID | None = None

    def __enter__(self) -> LiveReport:
        self._progress.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._progress.stop()

    def show_created(self, run: Run) -> None:
        self._console.print(
            f"[bold]{run.id}[/] {run.model} · cost [green]{format_usd(run.cost_micro_usd)}[/]",
            highlight=False,
        )
        self._queue = self._progress.add_task("Queued", total=None, detail="waiting for a worker")

    def show_update(self, run: Run) -> None:
        if run.status == RunStatus.PENDING or self._queue is None:
            return
        self._progress.update(self._queue, total=1, completed=1, detail="")
        if self._render is None:
            self._render = self._progress.add_task("Rendering", total=1.0, detail="")
        detail = run.logs[-1] if run.logs else (run.backend or "")
        done = 1.0 if run.status == RunStatus.SUCCEEDED else (run.progress or 0.0)
        self._progress.update(self._render, completed=done, detail=detail[:40])

    def show_download(self, done: int, total: int | None) -> None:
        if self._download is None:
            self._download = self._progress.add_task("Downloading", total=total, detail="")
        size = filesize.decimal(done) + (f" of {filesize.decimal(total)}" if total else "")
        self._progress.update(self._download, completed=done, total=total, detail=size)

    def show_saved(self, run: Run, path: Path) -> None:
        self._progress.stop()  # the last state of the bars stays above the summary
        self._console.print(
            f"[green]✓[/] saved [bold]{path}[/] ({path.stat().st_size:,} bytes)", highlight=False
        )
