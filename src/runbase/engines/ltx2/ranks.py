"""Context parallelism inside one rank process: the group, Ulysses attention, stopping.

The video tokens of each denoising step are split across N ranks, and diffusers' Ulysses
attention (all-to-all over the attention heads) lets every rank attend to all of them. Each
rank holds the whole model on its own GPU; the speed-up is in the transformer, which is
most of the time of a clip. The engine side is group.py; the process itself rank_process.py.

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

import threading
from datetime import timedelta
from typing import Any, Final

from runbase.engines.base import ProgressSink
from runbase.errors import EngineUnavailable

__all__ = ["HOST", "Rank", "context_parallel_plan"]

HOST: Final = "127.0.0.1"
_PROMPT_MASKS: Final = ("encoder_attention_mask", "audio_encoder_attention_mask")
_PER_TOKEN: Final = ("timestep", "video_keyframes_mask")
"""Transformer inputs that may carry one value per video token, split with the tokens."""


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


class Rank:
    """One rank of a context-parallel group, in its own process: joins the group, turns on
    parallel attention in the transformer, and agrees with the others on stopping.

    `device` is the engine's configured device ("cuda" or "cpu"); the rank's own is
    cuda:<rank> on CUDA (the N GPUs of CUDA_VISIBLE_DEVICES), "cpu" otherwise.
    """

    def __init__(self, rank: int, world: int, *, device: str, timeout_s: float) -> None:
        self.rank, self.world = rank, world
        self.device = f"cuda:{rank}" if device.startswith("cuda") else device
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
            HOST, port, is_master=False, timeout=self.timeout
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
