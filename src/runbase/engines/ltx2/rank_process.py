"""A context-parallel rank process: `python -m runbase.engines.ltx2.rank_process ...`.

Started by `RankGroup` (group.py), one per GPU. It joins the group, sets up an
`LTX2Engine` as this rank (loading the model onto its own device), then serves the runs the
engine process sends until told to end, or until the engine process is gone.
"""

from __future__ import annotations

import logging
import os
import pickle
import queue
import sys
import threading
from multiprocessing.connection import Connection
from typing import Any

from runbase.engines.ltx2.engine import LTX2Engine
from runbase.engines.ltx2.options import LTX2Options
from runbase.engines.ltx2.ranks import Rank
from runbase.engines.ltx2.wire import receive, send
from runbase.errors import GenerationFailed, RunFailure

__all__ = ["main", "rank_engine", "rank_main"]

logger = logging.getLogger(__name__)


def rank_engine(options: LTX2Options, member: Rank, pipeline: Any, upsampler: Any) -> LTX2Engine:
    """The engine of rank `member`: the group's options as they are, on the rank's device."""
    return LTX2Engine(options, pipeline=pipeline, upsampler=upsampler, rank=member)


def rank_main(rank: int, world: int, port: int, inbox: Connection, outbox: Connection) -> None:
    """A rank process: set up its LTX2Engine, then serve the engine's runs until told to end."""
    _, options, given = receive(inbox)
    member = Rank(rank, world, device=options.device, timeout_s=options.parallel_timeout_s)
    try:
        member.join(port)
        # Unpickled only now, on the rank's own device: a pickled recipe builds its model here.
        pipeline, upsampler = pickle.loads(given)
        engine = rank_engine(options, member, pipeline, upsampler)
        engine.setup()
    except Exception as exc:
        send(outbox, ("setup_failed", str(exc) or type(exc).__name__))
        return
    send(outbox, ("ready", engine.speed))
    runs: queue.Queue[Any] = queue.Queue()
    threading.Thread(target=_read_inbox, args=(inbox, runs, member.stop), daemon=True).start()
    sink = _RankSink(outbox if rank == 0 else None, member.stop)
    while (request := runs.get()) is not None:
        outcome: tuple[Any, ...]
        try:
            if rank == 0:
                outcome = ("done", engine.generate(request, sink))
            else:
                engine.follow(request, sink)
                outcome = ("done", None)
        except RunFailure as failure:
            outcome = ("failed", failure)
        except Exception as exc:
            logger.exception("rank %d failed", rank)
            outcome = ("failed", GenerationFailed(f"LTX-2 failed: {type(exc).__name__}: {exc}"))
        send(outbox, outcome)


class _RankSink:
    """A rank's ProgressSink: rank 0 reports to the engine; the others stay silent."""

    def __init__(self, outbox: Connection | None, stop: threading.Event) -> None:
        self._outbox, self._stop = outbox, stop

    def progress(self, fraction: float, message: str = "") -> None:
        if self._outbox is not None:
            send(self._outbox, ("progress", fraction, message))

    def log(self, message: str) -> None:
        if self._outbox is not None:
            send(self._outbox, ("log", message))

    def should_stop(self) -> bool:
        return self._stop.is_set()


def _read_inbox(inbox: Connection, runs: queue.Queue[Any], stop: threading.Event) -> None:
    """Requests to `runs`, stop requests to `stop`; exit with the engine process."""
    while True:
        try:
            message = receive(inbox)
        except (EOFError, OSError):
            os._exit(1)  # the engine process is gone (killed, or lost): nobody to serve
        if message is None:
            runs.put(None)
            return
        if message[0] == "stop":
            stop.set()
        else:  # ("run", request): a stale stop belongs to the run before
            stop.clear()
            runs.put(message[1])


def main(argv: list[str] | None = None) -> None:
    """`python -m runbase.engines.ltx2.rank_process RANK WORLD PORT INBOX_FD OUTBOX_FD`."""
    rank, world, port, inbox_fd, outbox_fd = (int(arg) for arg in (argv or sys.argv[1:]))
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s rank {rank} %(levelname)s %(name)s: %(message)s"
    )
    rank_main(
        rank,
        world,
        port,
        Connection(inbox_fd, writable=False),
        Connection(outbox_fd, readable=False),
    )


if __name__ == "__main__":
    main()
