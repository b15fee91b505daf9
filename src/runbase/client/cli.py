"""`runbase generate` and `runbase runs get`: the runs API from a terminal.

These commands are clients like any other: they talk HTTP through `runbase.client` to the
server at RUNBASE_BASE_URL (default http://127.0.0.1:8000) with RUNBASE_API_KEY, and never
reach into a server's internals, so they work against any Runbase-compatible server.

Exit codes that scripts can rely on:

    0  success: the run succeeded and its video was saved (or the run was read)
    1  the run failed (its error is printed; its cost was refunded)
    2  usage error: a bad option, or an image file that cannot be read
    3  API error: the server refused the request, or could not be reached
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, get_args

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

from runbase.client import (
    SEEDANCE_1_5_PRO,
    AspectRatio,
    Duration,
    Resolution,
    Run,
    Runbase,
    RunbaseError,
    RunStatus,
    SeedanceInput,
    encode_image,
)

EXIT_RUN_FAILED = 1
EXIT_API_ERROR = 3  # usage errors exit with 2, typer's own code for them

runs_app = typer.Typer(help="Read runs from a runbase server (over HTTP).", no_args_is_help=True)


def _choices(alias: Any) -> tuple[str, ...]:
    return tuple(str(value) for value in get_args(alias))


def _check_choice(value: str | None, option: str, allowed: tuple[str, ...]) -> None:
    if value is not None and value not in allowed:
        raise typer.BadParameter(f"{value!r} is not one of {', '.join(allowed)}", param_hint=option)


def _image_url(value: str) -> str:
    """A URL or data: URI as given; a local file as a data: URI (the server cannot read it)."""
    if value.startswith(("https://", "http://", "data:")):
        return value
    path = Path(value).expanduser()
    if not path.is_file():
        raise typer.BadParameter(
            f"{value!r} is not a URL or an existing file", param_hint="--image"
        )
    try:
        return encode_image(path)
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(str(exc), param_hint="--image") from exc


def _usd(micros: int) -> str:
    return f"${micros / 1_000_000:.6f}".rstrip("0").rstrip(".")


def _fail_api(error: RunbaseError, *, as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps({"error": {"message": error.message, "code": error.code}}))
    typer.echo(f"error: {error}", err=True)
    if error.code == "missing_api_key":
        typer.echo("hint: export RUNBASE_API_KEY=sk-...", err=True)
    raise typer.Exit(EXIT_API_ERROR)


class _PlainReport:
    """Line-by-line progress for logs and pipes: one line per change, no escape codes."""

    def __init__(self, *, quiet: bool) -> None:
        self._quiet = quiet
        self._last: tuple[RunStatus, int] | None = None

    def __enter__(self) -> _PlainReport:
        return self

    def __exit__(self, *_: object) -> None:
        pass

    def _say(self, line: str) -> None:
        if not self._quiet:
            typer.echo(line)

    def show_created(self, run: Run) -> None:
        self._say(f"{run.id} created: {run.model}, cost {_usd(run.cost_usd)}")

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


class _LiveReport:
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

    def __enter__(self) -> _LiveReport:
        self._progress.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._progress.stop()

    def show_created(self, run: Run) -> None:
        self._console.print(
            f"[bold]{run.id}[/] {run.model} · cost [green]{_usd(run.cost_usd)}[/]", highlight=False
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


def generate(
    prompt: Annotated[
        str,
        typer.Argument(
            metavar="PROMPT", help='What happens in the video; text in "double quotes" is spoken.'
        ),
    ],
    ratio: Annotated[
        str | None,
        typer.Option(
            "--ratio",
            metavar="|".join(_choices(AspectRatio)),
            help="Aspect ratio (default 16:9, or the first image's).",
            show_default=False,
        ),
    ] = None,
    resolution: Annotated[
        str | None,
        typer.Option(
            metavar="|".join(_choices(Resolution)), help="Output resolution (default 720p)."
        ),
    ] = None,
    duration: Annotated[
        str | None,
        typer.Option(metavar="|".join(_choices(Duration)), help="Length in seconds (default 4)."),
    ] = None,
    audio: Annotated[
        bool, typer.Option("--audio/--no-audio", help="Generate sound and speech.")
    ] = True,
    image: Annotated[
        list[str] | None,
        typer.Option(
            "--image",
            metavar="PATH_OR_URL",
            help="First frame, then (again) last frame: a local file or an https:// URL.",
        ),
    ] = None,
    output: Annotated[
        Path | None,
        typer.Option("-o", "--output", help="Where to write the MP4 (default ./RUN_ID.mp4)."),
    ] = None,
    model: Annotated[str, typer.Option(help="Model ID.")] = SEEDANCE_1_5_PRO,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print the finished run as JSON, nothing else.")
    ] = False,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the run.")] = 1800.0,
) -> None:
    """Generate a video: create a run, follow it, and save the MP4.

    Talks to RUNBASE_BASE_URL (default http://127.0.0.1:8000) with RUNBASE_API_KEY.
    Exit codes: 0 saved, 1 run failed, 2 usage error, 3 API error.
    """
    _check_choice(ratio, "--ratio", _choices(AspectRatio))
    _check_choice(resolution, "--resolution", _choices(Resolution))
    _check_choice(duration, "--duration", _choices(Duration))
    if len(image or []) > 2:
        raise typer.BadParameter(
            "give at most two: the first and the last frame", param_hint="--image"
        )
    run_input = SeedanceInput(
        prompt,
        aspect_ratio=ratio,  # type: ignore[arg-type]  # checked against the choices above
        resolution=resolution,  # type: ignore[arg-type]
        duration=duration,  # type: ignore[arg-type]
        generate_audio=audio,
        image_urls=tuple(_image_url(value) for value in image or []),
    )
    # A terminal gets a live display; pipes and logs get plain lines.
    interactive = sys.stdout.isatty() and not as_json
    report = _LiveReport(Console()) if interactive else _PlainReport(quiet=as_json)
    run: Run | None = None
    path: Path | None = None
    try:
        with Runbase() as client, report:
            run = client.runs.create(model, run_input)
            report.show_created(run)
            run = client.runs.wait(run.id, timeout=timeout, on_update=report.show_update)
            if run.status == RunStatus.SUCCEEDED:
                path = run.download(output, on_progress=report.show_download)
                report.show_saved(run, path)
    except RunbaseError as exc:
        _fail_api(exc, as_json=as_json)
    except KeyboardInterrupt:
        if run is not None:
            typer.echo(f"\n{run.id} goes on on the server: runbase runs get {run.id}", err=True)
        raise typer.Exit(130) from None
    assert run is not None
    if as_json:
        data = dict(run.raw)
        if path is not None:
            data["file"] = str(path.resolve())  # absolute: scripts may run elsewhere
        typer.echo(json.dumps(data, indent=2))
    if run.status == RunStatus.FAILED:
        error = run.error
        typer.echo(f"{run.id} failed: {error.code}: {error.message}" if error else "", err=True)
        raise typer.Exit(EXIT_RUN_FAILED)


@runs_app.command("get")
def get_run(
    run_id: Annotated[str, typer.Argument(metavar="RUN_ID")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the run object as JSON.")] = False,
) -> None:
    """Show a run: status, progress, cost and output URL."""
    try:
        with Runbase() as client:
            run = client.runs.get(run_id)
    except RunbaseError as exc:
        _fail_api(exc, as_json=as_json)
    if as_json:
        typer.echo(json.dumps(dict(run.raw), indent=2))
        return
    typer.echo(_describe(run))


def _describe(run: Run) -> str:
    lines = [
        f"{run.id}  {run.status}",
        f"model      {run.model}",
        f"cost       {_usd(run.cost_usd)}",
        f"created    {run.created_at.isoformat()}",
    ]
    if run.status == RunStatus.PROCESSING and run.progress is not None:
        lines.append(f"progress   {run.progress:.0%}")
    if run.completed_at is not None:
        lines.append(f"completed  {run.completed_at.isoformat()}")
        if run.started_at is not None:
            seconds = (run.completed_at - run.started_at).total_seconds()
            lines.append(f"took       {seconds:.1f} s")
    if run.output_url:
        lines.append(f"output     {run.output_url}")
    if run.error is not None:
        lines.append(f"error      {run.error.code}: {run.error.message}")
    return "\n".join(lines)


__all__ = ["generate", "get_run", "runs_app"]
