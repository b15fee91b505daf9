"""The client commands of `runbase`: the runs API from a terminal.

    runbase generate PROMPT [--ratio] [--resolution] [--duration] [--image] [-o FILE]
    runbase runs get RUN_ID | list [--limit] [--status] | cancel RUN_ID
    runbase models
    runbase account

These commands are clients like any other: they talk HTTP through `runbase.client` to the
server at RUNBASE_BASE_URL (default http://127.0.0.1:8000) with RUNBASE_API_KEY, and never
reach into a server's internals, so they work against any Runbase-compatible server. They
need only the package without extras (`pip install runbase`). Every one takes `--json`.

Exit codes that scripts can rely on:

    0  success: the run succeeded and its video was saved (or the run was read)
    1  the run failed or was canceled (its error is printed; its cost was refunded)
    2  usage error: a bad option, or an image file that cannot be read
    3  API error: the server refused the request, or could not be reached
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar, get_args

import typer
from rich.console import Console

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
from runbase.client._cli_progress import LiveReport, PlainReport, format_usd

EXIT_RUN_FAILED = 1
EXIT_API_ERROR = 3  # usage errors exit with 2, typer's own code for them

app = typer.Typer(help="Talk to a runbase server over HTTP.", no_args_is_help=True)
runs_app = typer.Typer(help="Read, list and cancel runs (over HTTP).", no_args_is_help=True)
app.add_typer(runs_app, name="runs")
T = TypeVar("T")
JsonFlag = Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")]


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


def _fail_api(error: RunbaseError, *, as_json: bool) -> NoReturn:
    if as_json:
        typer.echo(json.dumps({"error": {"message": error.message, "code": error.code}}))
    typer.echo(f"error: {error}", err=True)
    if error.code == "missing_api_key":
        typer.echo("hint: export RUNBASE_API_KEY=sk-...", err=True)
    raise typer.Exit(EXIT_API_ERROR)


def _ask(call: Callable[[Runbase], T], *, as_json: bool) -> T:
    """One exchange with the server; an API error is printed and exits with 3."""
    try:
        with Runbase() as client:
            return call(client)
    except RunbaseError as exc:
        _fail_api(exc, as_json=as_json)


@app.command()
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
    report = LiveReport(Console()) if interactive else PlainReport(quiet=as_json)
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
    if run.status != RunStatus.SUCCEEDED:  # failed, or canceled meanwhile: refunded either way
        error = run.error
        reason = f": {error.code}: {error.message}" if error else ""
        typer.echo(f"{run.id} {run.status}{reason}", err=True)
        raise typer.Exit(EXIT_RUN_FAILED)


@runs_app.command("get")
def get_run(
    run_id: Annotated[str, typer.Argument(metavar="RUN_ID")],
    as_json: Annotated[bool, typer.Option("--json", help="Print the run object as JSON.")] = False,
) -> None:
    """Show a run: status, progress, cost and output URL."""
    run = _ask(lambda client: client.runs.get(run_id), as_json=as_json)
    if as_json:
        typer.echo(json.dumps(dict(run.raw), indent=2))
        return
    typer.echo(_describe(run))


def _describe(run: Run) -> str:
    lines = [
        f"{run.id}  {run.status}",
        f"model      {run.model}",
        f"cost       {format_usd(run.cost_micro_usd)}",
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


@runs_app.command("list")
def list_runs(
    limit: Annotated[int, typer.Option(help="How many runs (1 to 100).")] = 20,
    status: Annotated[
        str | None,
        typer.Option(metavar="|".join(RunStatus), help="Only runs with this status."),
    ] = None,
    cursor: Annotated[
        str | None, typer.Option(help="The next page: the cursor a previous list printed.")
    ] = None,
    as_json: JsonFlag = False,
) -> None:
    """List the account's runs, newest first."""
    _check_choice(status, "--status", tuple(RunStatus))
    page = _ask(
        lambda client: client.runs.list(limit=limit, status=status, cursor=cursor), as_json=as_json
    )
    if as_json:
        data = {"data": [dict(run.raw) for run in page.data], "nextCursor": page.next_cursor}
        typer.echo(json.dumps(data, indent=2))
        return
    for run in page.data:
        created = run.created_at.strftime("%Y-%m-%d %H:%M:%S")
        cost = format_usd(run.cost_micro_usd)
        typer.echo(f"{run.id}  {run.status:<10}  {created}  {cost:>10}  {run.model}")
    if not page.data:
        typer.echo("(no runs)")
    if page.next_cursor:
        typer.echo(f"more: runbase runs list --cursor {page.next_cursor}")


@runs_app.command("cancel")
def cancel_run(
    run_id: Annotated[str, typer.Argument(metavar="RUN_ID")], as_json: JsonFlag = False
) -> None:
    """Cancel a run (refunded in full); waits for a processing run's engine to stop."""
    run = _ask(lambda client: client.runs.cancel(run_id), as_json=as_json)
    typer.echo(json.dumps(dict(run.raw), indent=2) if as_json else _describe(run))


@app.command("models")
def list_models(as_json: JsonFlag = False) -> None:
    """The models the server runs, with their engines and the licences of their weights."""
    models = _ask(lambda client: client.models.list(), as_json=as_json)
    if as_json:
        typer.echo(json.dumps({"data": [dict(model.raw) for model in models]}, indent=2))
        return
    for model in models:
        typer.echo(f"{model.id}  ({model.display_name})")
        for licence in model.licenses:
            serving = " (serving now)" if licence.backend == model.backend else ""
            address = f" <{licence.url}>" if licence.url else ""
            typer.echo(f"  engine {licence.backend}{serving}: {licence.license}{address}")


@app.command("account")
def show_account(as_json: JsonFlag = False) -> None:
    """The account's balance, and this key's spend and limits."""
    account = _ask(lambda client: client.account(), as_json=as_json)
    if as_json:
        typer.echo(json.dumps(dict(account.raw), indent=2))
        return
    key = account.key
    limit = f"${key.spend_limit_cents / 100:,.2f}" if key.spend_limit_cents is not None else "none"
    typer.echo(
        "\n".join(
            [
                f"account    {account.name} ({account.id})",
                f"balance    {format_usd(account.balance_micro_usd)}",
                f"key        {key.prefix}... {key.name}{' (test)' if key.is_test else ''}",
                f"spent      {format_usd(key.spent_micro_usd)} (limit {limit})",
                f"runs/24h   {key.runs_last_24h} (quota {key.daily_run_quota or 'none'})",
                f"rate limit {key.rate_limit}",
            ]
        )
    )


__all__ = ["app", "cancel_run", "generate", "get_run", "list_models", "list_runs", "runs_app"]
