"""Context parallelism on the engine's side: every generation shared by the GPUs of a node.

    the worker's engine process                    rank processes (rank_process.py)
    LTX2Engine ── RankGroup ── pipes ──────────────  rank 0 .. N-1, one per GPU (cuda:rank),
      setup()     start(): spawn, load, enable        each an LTX2Engine given its `Rank`
      generate()  the request to every rank; relays   all denoise in step; rank 0 alone
                  rank 0's progress and the stop      decodes and writes the MP4

Ranks talk to each other through torch.distributed (NCCL for tensors on CUDA, gloo on the
CPU and for the per-step stop flag), rendezvousing on a TCPStore that the `RankGroup`
hosts. They talk to the engine over two pipes each, so a rank that dies is noticed at once
(the run fails naming it) and a rank whose engine process dies exits. After a run in which
any rank failed, the group is stopped, and the next run starts it again. What happens
inside a rank is ranks.py. Settings: `ltx2_context_parallel`; see docs/ltx2.md.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import subprocess
import sys
import time
from datetime import timedelta
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any, Final

from runbase.engines.base import GenerationRequest, GenerationResult, ProgressSink
from runbase.engines.ltx2.ranks import HOST
from runbase.engines.ltx2.wire import receive, send
from runbase.errors import EngineUnavailable, GenerationFailed, RunCanceled, RunFailure

if TYPE_CHECKING:
    from runbase.engines.ltx2.options import LTX2Options

__all__ = ["RankGroup"]

logger = logging.getLogger(__name__)

_RANK_MODULE: Final = "runbase.engines.ltx2.rank_process"
_FINISH_GRACE_S: Final = 10.0
"""After rank 0 has answered, how long the other ranks (long done, normally) may take."""


class _RankProcess:
    def __init__(
        self, rank: int, process: subprocess.Popen[bytes], inbox: Connection, outbox: Connection
    ) -> None:
        self.rank, self.process = rank, process
        self.inbox, self.outbox = inbox, outbox
        """The rank's inbox (we send) and outbox (we receive)."""

    def exited(self) -> str:
        try:
            code = self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        return (
            f"context-parallel rank {self.rank} exited unexpectedly (exit code {code}); "
            "it may have run out of memory"
        )


class RankGroup:
    """The engine's side of a context-parallel group: starts the N rank processes, hands
    each run to all of them, relays rank 0's progress and the stop request, and returns
    rank 0's result; a plain object, so that a Ray actor can hold it as well."""

    def __init__(
        self, options: LTX2Options, *, pipeline: Any = None, upsampler: Any = None
    ) -> None:
        self.options = options
        self._pipeline, self._upsampler = pipeline, upsampler
        self._ranks: list[_RankProcess] = []
        self._store: Any = None
        self.outcomes: tuple[str, ...] = ()
        """How each rank ended the last run: "done", "canceled", "failed" or "lost"."""

    @property
    def pids(self) -> tuple[int, ...]:
        return tuple(member.process.pid for member in self._ranks)

    def start(self) -> dict[str, Any]:
        """Start the ranks and wait until every one has loaded the model; returns the
        speed options in effect (rank 0's).

        Raises:
            EngineUnavailable: a rank could not start; the message says which and why.
        """
        import torch.distributed as dist

        world = self.options.context_parallel
        timeout = timedelta(seconds=self.options.parallel_timeout_s)
        self._store = dist.TCPStore(  # type: ignore[attr-defined]
            HOST, 0, is_master=True, wait_for_workers=False, timeout=timeout
        )
        started = time.monotonic()
        for rank in range(world):
            self._ranks.append(self._spawn(rank, world, self._store.port))
        given = pickle.dumps((self._pipeline, self._upsampler), protocol=pickle.HIGHEST_PROTOCOL)
        setup = ("setup", self.options, given)
        speeds: dict[int, dict[str, Any]] = {}
        by_outbox = {member.outbox: member for member in self._ranks}
        try:
            for member in self._ranks:
                send(member.inbox, setup)
            while len(speeds) < world:
                # The first rank to fail ends the wait: the others would wait for it in vain.
                for outbox in wait([m.outbox for m in self._ranks if m.rank not in speeds]):
                    assert isinstance(outbox, Connection)
                    member = by_outbox[outbox]
                    try:
                        answer = receive(outbox)
                    except EOFError:
                        raise EngineUnavailable(member.exited()) from None
                    if answer[0] != "ready":
                        raise EngineUnavailable(
                            f"context-parallel rank {member.rank} could not start: {answer[1]}"
                        )
                    speeds[member.rank] = answer[1]
        except BaseException:
            self.close()
            raise
        logger.info(
            "LTX-2 ready on %d ranks (Ulysses) in %.1f s", world, time.monotonic() - started
        )
        return speeds[0]

    def _spawn(self, rank: int, world: int, port: int) -> _RankProcess:
        to_rank, rank_inbox = os.pipe()
        rank_outbox, from_rank = os.pipe()
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                _RANK_MODULE,
                str(rank),
                str(world),
                str(port),
                str(to_rank),
                str(from_rank),
            ],
            pass_fds=(to_rank, from_rank),
        )
        os.close(to_rank)
        os.close(from_rank)
        return _RankProcess(
            rank,
            process,
            Connection(rank_inbox, readable=False),
            Connection(rank_outbox, writable=False),
        )

    def generate(self, request: GenerationRequest, progress: ProgressSink) -> GenerationResult:
        """Generate `request` on every rank; rank 0 writes `scratch_dir/output.mp4`.

        Raises:
            RunCanceled: the run was asked to stop; every rank stopped at the same step.
            GenerationFailed: a rank failed or died (named); the group is then stopped, and
                the next run starts it again.
        """
        if not self._ranks:
            progress.log("starting the context-parallel ranks again after a failed run")
            try:
                self.start()
            except EngineUnavailable as exc:
                raise GenerationFailed(str(exc)) from exc
        for member in self._ranks:
            send(member.inbox, ("run", request))
        answers = self._collect(progress)
        self.outcomes = tuple(_outcome(answers.get(m.rank)) for m in self._ranks)
        if any(outcome not in ("done", "canceled") for outcome in self.outcomes):
            self.close()  # some rank is out of step (or gone): start afresh next run
        return _result(answers, self.options.context_parallel)

    def _collect(self, progress: ProgressSink) -> dict[int, tuple[Any, ...]]:
        """Every rank's answer to the run (or ("lost", why)), relaying progress and stop;
        stops waiting when a rank fails or dies, or `_FINISH_GRACE_S` after rank 0's."""
        answers: dict[int, tuple[Any, ...]] = {}
        by_outbox = {member.outbox: member for member in self._ranks}
        stop_sent = False
        give_up_at: float | None = None
        while len(answers) < len(self._ranks):
            if give_up_at is not None and time.monotonic() >= give_up_at:
                break
            if not stop_sent and progress.should_stop():
                send(self._ranks[0].inbox, ("stop",))
                stop_sent = True
            waiting = [m.outbox for m in self._ranks if m.rank not in answers]
            for outbox in wait(waiting, timeout=0.1):
                assert isinstance(outbox, Connection)
                member = by_outbox[outbox]
                try:
                    message = receive(outbox)
                except (EOFError, OSError):
                    answers[member.rank] = ("lost", member.exited())
                    return answers
                if message[0] == "progress":
                    progress.progress(message[1], message[2])
                elif message[0] == "log":
                    progress.log(message[1])
                else:
                    answers[member.rank] = message
                    if message[0] == "failed" and not isinstance(message[1], RunCanceled):
                        return answers
                    if member.rank == 0:
                        give_up_at = time.monotonic() + _FINISH_GRACE_S
        return answers

    def close(self) -> None:
        """Stop every rank (asked first; killed if it does not end within 5 s)."""
        ranks, self._ranks = self._ranks, []
        for member in ranks:
            with contextlib.suppress(OSError):
                send(member.inbox, None)
        deadline = time.monotonic() + 5
        for member in ranks:
            try:
                member.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                member.process.kill()
                member.process.wait()
            member.inbox.close()
            member.outbox.close()
        self._store = None


def _outcome(answer: tuple[Any, ...] | None) -> str:
    if answer is None:
        return "no answer"
    if answer[0] == "failed":
        return "canceled" if isinstance(answer[1], RunCanceled) else "failed"
    return str(answer[0])


def _result(answers: dict[int, tuple[Any, ...]], world: int) -> GenerationResult:
    """Rank 0's result, or the failure that explains the run best: a rank that died, then
    a rank that failed, then a cancel."""
    for answer in answers.values():
        if answer[0] == "lost":
            raise GenerationFailed(answer[1])
    for rank, answer in sorted(answers.items()):
        failure = answer[1] if answer[0] == "failed" else None
        if isinstance(failure, RunFailure) and not isinstance(failure, RunCanceled):
            where = "" if rank == 0 else f" (context-parallel rank {rank})"
            raise type(failure)(failure.message + where)
    first = answers.get(0)
    if first is None:
        raise GenerationFailed(f"context-parallel rank 0 of {world} did not answer")
    if first[0] == "failed":
        raise RunCanceled()
    result = first[1]
    assert isinstance(result, GenerationResult)
    return result
