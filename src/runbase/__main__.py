"""`python -m runbase` and the `runbase` command.

The command's script imports only this module: a spawned engine process runs the script
again (multiprocessing re-runs the parent's main file), and this way it does not import
the whole command line, the server and its database layer along with it.
"""


def main() -> None:
    from runbase.commands import main as run_command

    run_command()


if __name__ == "__main__":
    main()
