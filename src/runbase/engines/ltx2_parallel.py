"""Context parallelism for LTX-2: every generation shared by the GPUs of one node.

The video tokens of each denoising step are split across N ranks, and diffusers' Ulysses
attention (all-to-all over the attention heads) lets every rank attend to all of them. Each
rank holds the whole model on its own GPU; the speed-up is in the transformer, which is
most of the time of a clip. Settings: `ltx2_context_parallel`; see docs/ltx2.md.

    the worker's engine process                    rank processes (python -m this module)
    LTX2Engine ── RankGroup ── pipes ──────────────  rank 0 .. N-1, one per GPU (cuda:rank),
      setup()     start(): spawn, load, enable        each an LTX2Engine given its `Rank`
      generate()  the request to every rank; relays   all denoise in step; rank 0 alone
                  rank 0's progress and the stop      decodes and writes the MP4

Ranks talk to each other through torch.distributed (NCCL for tensors on CUDA, gloo on the
CPU and for the per-step stop flag), rendezvousing on a TCPStore that the `RankGroup`
hosts. They talk to the engine over two pipes each, so a rank that dies is noticed at once
(the run fails naming it) and a rank whose engine process dies exits. After a run in which
any rank failed, the group is stopped, and the next run starts it again.

What LTX-2 needs beyond diffusers 0.42.1's `_cp_plan` for the model (each checked on CPU
against the same run without parallelism, tests/engines/test_ltx2_parallel.py):

- the RoPE tables of "split" RoPE are (B, H, T, D/2): split along T = dim 2, not dim 1;
  `cross_attn_rope` (audio <-> video attention) is split too;
- per-token timesteps (image conditioning) are split with the tokens;
- the prompt mask is dropped: with the learnable registers of every published checkpoint
  it keeps every token, and the attention processor expands it to all heads, which
  Ulysses (a head subset per rank) cannot take;
- a token count that N does not divide uses diffusers' "ulysses anything" mode for that
  call, and the transformer's output is gathered here (diffusers' uneven gather needs NCCL).

The audio tokens are not split: each rank keeps all of them, and attention over N copies
of the same keys is the same attention.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import queue
import subprocess
import sys
import threading
import time
from dataclasses import replace
from datetime import timedelta
from multiprocessing.connection import Connection, wait
from typing import TYPE_CHECKING, Any, Final

from runbase.engines.base import GenerationRequest, GenerationResult, ProgressSink
from runbase.errors import EngineUnavailable, GenerationFailed, RunCanceled, RunFailure

if TYPE_CHECKING:
    from runbase.engines.ltx2 import LTX2Options

__all__ = ["Rank", "RankGroup", "context_parallel_plan"]

logger = logging.getLogger(__name__)

_HOST: Final = "127.0.0.1"
_PROMPT_MASKS: Final = ("encoder_attention_mask", "audio_encoder_attention_mask")
_PER_TOKEN: Final = ("timestep", "video_keyframes_mask")
"""Transformer inputs that may carry one value per video token, split with the tokens."""
_FINISH_GRACE_S: Final = 10.0
"""After rank 0 has answered, how long the other ranks (long done, normally) may take."""


def _send(conn: Connection, message: Any) -> None:
    # Plain pickle: multiprocessing's pickler would pass tensors as shared-memory handles,
    # which only processes that multiprocessing started may open.
    conn.send_bytes(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))


def _receive(conn: Connection) -> Any:
    return pickle.loads(conn.recv_bytes())


def context_parallel_plan(transformer: Any) -> dict[str, Any]:
    """Where diffusers splits LTX-2's inputs across the ranks (see the module docstring).

    The transformer's output is gathered by `_TokenSplit`, not by the plan.
    """
    from diffusers.models._modeling_parallel import ContextParallelInput

    split_rope = transformer.config.rope_type == "split"
    rope = ContextParallelInput(
        split_dim=2 if split_rope else 1, expected_dims=4 if split_rope else 3, split_output=True
    )
    return {
        "": {
            "hidden_states": ContextParallelInput(split_dim=1, expected_dims=3),
            "encoder_hidden_states": ContextParallelInput(split_dim=1, expected_dims=3),
        },
        "rope": {0: rope, 1: rope},
        "cross_attn_rope": {0: rope, 1: rope},
    }


# ---- inside a rank process ------------------------------------------------------------


class Rank:
    """One rank of a context-parallel group, in its own process: joins the group, turns on
    parallel attention in the transformer, and agrees with the others on stopping."""

    def __init__(self, rank: int, world: int, *, device: str, timeout_s: float) -> None:
        self.rank, self.world = rank, world
        self.device = f"cuda:{rank}" if device == "cuda" else device
        self.timeout = timedelta(seconds=timeout_s)
        self.stop = threading.Event()
        """Set (on rank 0) when the engine asks the run to stop."""

    def join(self, port: int) -> None:
        import torch
        import torch.distributed as dist

        cuda = self.device.startswith("cuda")
        if cuda:
            torch.cuda.set_device(self.rank)
        store = dist.TCPStore(  # type: ignore[attr-defined]
            _HOST, port, is_master=False, timeout=self.timeout
        )
        dist.init_process_group(
            # Small CPU tensors (the stop flag) go through gloo even next to NCCL.
            "cpu:gloo,cuda:nccl" if cuda else "gloo",
            store=store,
            rank=self.rank,
            world_size=self.world,
            timeout=self.timeout,
        )

    def enable(self, pipeline: Any) -> None:
        """Ulysses attention of degree `world` in `pipeline`'s transformer."""
        import torch
        from diffusers import ContextParallelConfig

        registers = pipeline.connectors.config
        if None in (
            getattr(registers, "video_connector_num_learnable_registers", None),
            getattr(registers, "audio_connector_num_learnable_registers", None),
        ):
            raise EngineUnavailable(
                "context parallelism needs text connectors with learnable registers (every "
                "published LTX-2 checkpoint has them): without them the prompt's padding mask "
                "is expanded to every attention head, which Ulysses attention cannot split"
            )
        transformer = pipeline.transformer
        config = ContextParallelConfig(ulysses_degree=self.world)
        plan = context_parallel_plan(transformer)
        if self.device == "cpu":
            # diffusers 0.42.1 picks the rank's device as rank % torch.accelerator.
            # device_count(), which is 0 without a GPU; on CPU any index will do.
            count = torch.accelerator.device_count
            torch.accelerator.device_count = lambda: 1
            try:
                transformer.enable_parallelism(config=config, cp_plan=plan)
            finally:
                torch.accelerator.device_count = count
        else:
            transformer.enable_parallelism(config=config, cp_plan=plan)
        _TokenSplit(transformer, config, self.rank, self.world).install()

    def in_step(self, progress: ProgressSink) -> ProgressSink:
        """`progress` whose `should_stop` every rank answers alike: rank 0 decides."""
        return _InStep(progress, self)

    def agree_to_stop(self) -> bool:
        import torch
        import torch.distributed as dist

        flag = torch.tensor([int(self.rank == 0 and self.stop.is_set())])
        dist.broadcast(flag, src=0)
        return bool(flag.item())


class _InStep:
    """A ProgressSink whose stop answer is rank 0's, broadcast: every rank of a group asks
    at the same points (between steps and stages) and leaves at the same one."""

    def __init__(self, progress: ProgressSink, rank: Rank) -> None:
        self._progress, self._rank = progress, rank

    def progress(self, fraction: float, message: str = "") -> None:
        self._progress.progress(fraction, message)

    def log(self, message: str) -> None:
        self._progress.log(message)

    def should_stop(self) -> bool:
        return self._rank.agree_to_stop()


class _TokenSplit:
    """Hooks around the transformer that make diffusers' split fit LTX-2, per call: drop the
    prompt masks, split per-token inputs, pick even or uneven ("anything") Ulysses, and
    gather the output tokens in the order they were split."""

    def __init__(self, transformer: Any, config: Any, rank: int, world: int) -> None:
        self._transformer, self._config = transformer, config
        self._rank, self._world = rank, world
        heads = [m.heads for m in transformer.modules() if hasattr(m, "processor")]
        self._heads_divide = all(count % world == 0 for count in heads)
        self._sizes: list[int] = []

    def install(self) -> None:
        self._transformer.register_forward_pre_hook(self._before, with_kwargs=True)
        self._transformer.proj_out.register_forward_hook(self._gather)

    def _before(
        self, module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        for name in _PROMPT_MASKS:
            mask = kwargs.get(name)
            if mask is None:
                continue
            if mask.ndim != 2 or not bool(mask.all()):
                raise RuntimeError(
                    f"context parallelism cannot apply a padding {name}: it needs a checkpoint "
                    "whose text connectors have learnable registers"
                )
            kwargs[name] = None  # all ones: attending to every token, the same as no mask
        tokens = kwargs["hidden_states"].shape[1]
        texts = kwargs["encoder_hidden_states"].shape[1]
        share, extra = divmod(tokens, self._world)
        self._sizes = [share + 1] * extra + [share] * (self._world - extra)  # tensor_split's
        even = extra == 0 and texts % self._world == 0 and self._heads_divide
        self._config.ulysses_anything = not even
        for name in _PER_TOKEN:
            value = kwargs.get(name)
            if value is not None and value.ndim >= 2 and value.shape[1] == tokens:
                kwargs[name] = value.tensor_split(self._world, dim=1)[self._rank]
        return args, kwargs

    def _gather(self, module: Any, args: Any, output: Any) -> Any:
        import torch
        import torch.distributed as dist

        longest = max(self._sizes)
        padded = torch.nn.functional.pad(output, (0, 0, 0, longest - output.shape[1]))
        parts = [torch.empty_like(padded) for _ in self._sizes]
        dist.all_gather(parts, padded.contiguous())
        return torch.cat(
            [part[:, :size] for part, size in zip(parts, self._sizes, strict=True)], dim=1
        )


class _RankSink:
    """A rank's ProgressSink: rank 0 reports to the engine; the others stay silent."""

    def __init__(self, outbox: Connection | None, stop: threading.Event) -> None:
        self._outbox, self._stop = outbox, stop

    def progress(self, fraction: float, message: str = "") -> None:
        if self._outbox is not None:
            _send(self._outbox, ("progress", fraction, message))

    def log(self, message: str) -> None:
        if self._outbox is not None:
            _send(self._outbox, ("log", message))

    def should_stop(self) -> bool:
        return self._stop.is_set()


def _read_inbox(inbox: Connection, runs: queue.Queue[Any], stop: threading.Event) -> None:
    """Requests to `runs`, stop requests to `stop`; exit with the engine process."""
    while True:
        try:
            message = _receive(inbox)
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


def rank_main(rank: int, world: int, port: int, inbox: Connection, outbox: Connection) -> None:
    """A rank process: set up its LTX2Engine, then serve the engine's runs until told to end."""
    from runbase.engines.ltx2 import LTX2Engine

    _, options, given = _receive(inbox)
    member = Rank(rank, world, device=options.device, timeout_s=options.parallel_timeout_s)
    try:
        member.join(port)
        # Unpickled only now, on the rank's own device: a pickled recipe builds its model here.
        pipeline, upsampler = pickle.loads(given)
        engine = LTX2Engine(
            replace(options, device=member.device),
            pipeline=pipeline,
            upsampler=upsampler,
            rank=member,
        )
        engine.setup()
    except Exception as exc:
        _send(outbox, ("setup_failed", str(exc) or type(exc).__name__))
        return
    _send(outbox, ("ready", engine.speed))
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
        _send(outbox, outcome)


# ---- in the worker's engine process ------------------------------------------------------


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
            _HOST, 0, is_master=True, wait_for_workers=False, timeout=timeout
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
                _send(member.inbox, setup)
            while len(speeds) < world:
                # The first rank to fail ends the wait: the others would wait for it in vain.
                for outbox in wait([m.outbox for m in self._ranks if m.rank not in speeds]):
                    assert isinstance(outbox, Connection)
                    member = by_outbox[outbox]
                    try:
                        answer = _receive(outbox)
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
                __name__,
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
            _send(member.inbox, ("run", request))
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
                _send(self._ranks[0].inbox, ("stop",))
                stop_sent = True
            waiting = [m.outbox for m in self._ranks if m.rank not in answers]
            for outbox in wait(waiting, timeout=0.1):
                assert isinstance(outbox, Connection)
                member = by_outbox[outbox]
                try:
                    message = _receive(outbox)
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
                _send(member.inbox, None)
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


def main(argv: list[str] | None = None) -> None:
    """`python -m runbase.engines.ltx2_parallel RANK WORLD PORT INBOX_FD OUTBOX_FD`."""
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
