"""The `runbase` command: the client's commands always, the server's when it is installed.

    pip install runbase              generate, runs get/list/cancel, models, account
    pip install 'runbase[server]'    adds serve, worker, dispatcher, accounts, credits, keys

The client's commands (`runbase.client.cli`) need httpx, typer and rich only. The server's
(`runbase.cli`) import FastAPI, SQLAlchemy and the media libraries; on a client-only install
their names still answer, with one line that says what to install.
"""

from __future__ import annotations

from typing import Annotated, Final

import typer

from runbase.client.cli import app as client_app

SERVER_COMMANDS: Final = ("serve", "worker", "dispatcher", "accounts", "credits", "keys", "admin")
"""The names `runbase.cli` adds (a test keeps this list in step with it)."""
SERVER_INSTALL: Final = "pip install 'runbase[server]'"
EXIT_NOT_INSTALLED = 1


def build_app() -> typer.Typer:
    """The whole command: the client's commands, then the server's or their stand-ins."""
    app = typer.Typer(
        help="runbase: a client for the Runbase runs API, and a self-hostable server for it.",
        no_args_is_help=True,
    )
    app.add_typer(client_app)
    try:
        from runbase.cli import app as server_app
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] == "runbase":
            raise  # a broken checkout, not a missing extra
        for name in SERVER_COMMANDS:
            _add_stand_in(app, name)
    else:
        app.add_typer(server_app)
    return app


def _add_stand_in(app: typer.Typer, name: str) -> None:
    """A command that says, in one line, what to install to get the real one."""

    def stand_in(
        args: Annotated[list[str] | None, typer.Argument(hidden=True)] = None,
    ) -> None:
        typer.echo(f"runbase {name} needs the server: {SERVER_INSTALL}", err=True)
        raise typer.Exit(EXIT_NOT_INSTALLED)

    app.command(
        name,
        help=f"(needs the server: {SERVER_INSTALL})",
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
        add_help_option=False,
    )(stand_in)


def main() -> None:
    build_app()()
