"""Context parallelism for LTX-2 (engines/ltx2/group.py, ranks.py) on CPU: two rank processes
over gloo.

The ranks load a tiny random-weight LTX-2 from a folder, as production ranks load the real
one, and split every denoising step between them with diffusers' Ulysses attention. The key
check: the same request and seed give the same video as one process without parallelism.
Pixel values of a random model mean nothing by themselves, but they are very sensitive to
the computation: another seed changes frames by about 30 levels on average, while the
parallel run stays within a small fraction of one level (x264 at crf 1 turns the 1e-7
differences of float sums into rare one-level rounding flips, and those into a few
slightly different blocks).

Every run uses the two-stage recipe at 64x64: stage one has 13 video tokens, which two
ranks cannot split evenly ("ulysses anything"), stage two 52, which they can.
"""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # any hub access would fail loudly

import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from support import RecordingSink

pytest.importorskip("diffusers", reason="the LTX-2 engine needs the ltx2 extra")

from ltx2_tiny import (
    TINY_OPTIONS,
    assert_contract_mp4,
    gradient,
    make_request,
    tiny_components,
    tiny_upsampler,
)

from runbase.config import Settings
from runbase.engines import load_engine
from runbase.engines.ltx2 import LTX2Engine, LTX2Options
from runbase.engines.ltx2.rank_process import rank_engine
from runbase.engines.ltx2.ranks import Rank
from runbase.errors import EngineUnavailable, GenerationFailed, RunCanceled
from runbase.media.probe import read_frames

FRAMES = list(range(0, 97, 8))  # every eighth frame of the 97
STEPS = 8 + 3  # two stages


def save_tiny_model(folder: Path, **components: Any) -> Path:
    from diffusers import LTX2Pipeline

    LTX2Pipeline(**tiny_components(**components)).save_pretrained(folder)
    tiny_upsampler().save_pretrained(folder / "latent_upsampler")
    return folder


def tiny_options(folder: Path, **options: Any) -> LTX2Options:
    values = {
        **TINY_OPTIONS,
        "model": str(folder),
        "max_generation_side": 64,
        "two_stage": "on",
        "crf": 1,
        **options,
    }
    return LTX2Options(**values)


def started(options: LTX2Options) -> LTX2Engine:
    engine = LTX2Engine(options)
    engine.setup()
    return engine


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("ltx2") / "model", registers=16)


@pytest.fixture(scope="module")
def parallel(model: Path) -> Iterator[LTX2Engine]:
    engine = started(tiny_options(model, context_parallel=2))
    yield engine
    engine.close()


@pytest.fixture(scope="module")
def single(model: Path) -> LTX2Engine:
    return started(tiny_options(model))


def frames(path: Path) -> np.ndarray:
    return np.stack(read_frames(path, FRAMES)).astype(np.int16)


def assert_same_video(a: Path, b: Path) -> None:
    difference = np.abs(frames(a) - frames(b))
    assert difference.mean() < 0.1, difference.mean()
    assert (difference > 2).mean() < 0.005, (difference > 2).mean()


@pytest.mark.parametrize("count", [0, 1, 2])
def test_output_matches_one_process(
    tmp_path: Path, parallel: LTX2Engine, single: LTX2Engine, count: int
) -> None:
    images = (gradient(640, 480, hue=20), gradient(480, 640, hue=150))[:count]
    urls = [f"https://example.com/{n}.png" for n in range(count)]
    outputs = []
    for name, engine in (("parallel", parallel), ("single", single)):
        request = make_request(
            tmp_path / name, images=images, image_urls=urls, generate_audio=count != 1
        )
        sink = RecordingSink()
        result = engine.generate(request, sink)
        assert_contract_mp4(result.files[0], request)
        assert result.metadata["two_stage"] and result.metadata["generation_size"] == [64, 64]
        assert sink.messages.count("denoising") == STEPS
        assert sink.fractions == sorted(sink.fractions) and sink.fractions[-1] == 1.0
        outputs.append(result)
    assert outputs[0].metadata["speed"]["context_parallel"] == 2
    assert outputs[0].metadata["conditioning"] == ("text", "first_frame", "first_last")[count]
    assert parallel._group is not None and parallel._group.outcomes == ("done", "done")
    assert_same_video(outputs[0].files[0], outputs[1].files[0])
    if count == 0:
        # The control: the comparison above would notice a different computation.
        other = single.generate(make_request(tmp_path / "other", seed=8), RecordingSink())
        assert np.abs(frames(other.files[0]) - frames(outputs[1].files[0])).mean() > 10


def test_interleaved_rope_matches_too(tmp_path: Path) -> None:
    """The other RoPE layout: its tables are split along their second dimension."""
    folder = save_tiny_model(tmp_path / "model", registers=16, rope_type="interleaved")
    parallel = started(tiny_options(folder, context_parallel=2))
    try:
        request = make_request(tmp_path / "parallel")
        result = parallel.generate(request, RecordingSink())
    finally:
        parallel.close()
    assert_contract_mp4(result.files[0], request)
    reference = started(tiny_options(folder)).generate(
        make_request(tmp_path / "single"), RecordingSink()
    )
    assert_same_video(result.files[0], reference.files[0])


def test_cancel_stops_every_rank(tmp_path: Path, parallel: LTX2Engine) -> None:
    group = parallel._group
    assert group is not None
    pids = group.pids
    sink = RecordingSink(stop_at=0.3)
    with pytest.raises(RunCanceled):
        parallel.generate(make_request(tmp_path / "canceled"), sink)
    assert group.outcomes == ("canceled", "canceled")  # both left at the same step
    assert sink.messages.count("denoising") < STEPS
    assert not (tmp_path / "canceled" / "output.mp4").exists()
    # Still in step: the same ranks serve the next run.
    request = make_request(tmp_path / "next", generate_audio=False)
    assert_contract_mp4(parallel.generate(request, RecordingSink()).files[0], request)
    assert group.pids == pids and group.outcomes == ("done", "done")


class KillingSink(RecordingSink):
    """Kills rank 1 when the first denoising step is reported."""

    def __init__(self, pid: int) -> None:
        super().__init__()
        self.pid = pid
        self.killed_at: float | None = None

    def progress(self, fraction: float, message: str = "") -> None:
        super().progress(fraction, message)
        if message == "denoising" and self.killed_at is None:
            os.kill(self.pid, signal.SIGKILL)
            self.killed_at = time.monotonic()


def test_a_killed_rank_fails_the_run_and_the_next_run_starts_afresh(
    tmp_path: Path, parallel: LTX2Engine
) -> None:
    group = parallel._group
    assert group is not None
    pids = group.pids
    sink = KillingSink(pids[1])
    with pytest.raises(GenerationFailed, match=r"context-parallel rank 1 exited unexpectedly"):
        parallel.generate(make_request(tmp_path / "killed"), sink)
    assert sink.killed_at is not None and time.monotonic() - sink.killed_at < 15
    assert "lost" in group.outcomes
    assert group.pids == ()  # every rank stopped, rank 0 included
    assert not (tmp_path / "killed" / "output.mp4").exists()
    request = make_request(tmp_path / "after")
    sink = RecordingSink()
    assert_contract_mp4(parallel.generate(request, sink).files[0], request)
    assert any("starting the context-parallel ranks again" in line for line in sink.logs)
    assert len(group.pids) == 2 and set(group.pids).isdisjoint(pids)


def test_a_rank_that_cannot_start_says_why(tmp_path: Path) -> None:
    folder = save_tiny_model(tmp_path / "model")  # connectors without registers
    engine = LTX2Engine(tiny_options(folder, context_parallel=2))
    with pytest.raises(EngineUnavailable, match=r"rank \d could not start: .*learnable registers"):
        engine.setup()


def test_options_and_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="context_parallel must be at least 1"):
        LTX2Options(context_parallel=0)
    with pytest.raises(ValueError, match="set device to 'cuda'"):
        LTX2Options(context_parallel=2, device="cuda:1")
    monkeypatch.setenv("RUNBASE_LTX2_CONTEXT_PARALLEL", "4")
    engine = load_engine("ltx2", Settings())
    assert isinstance(engine, LTX2Engine) and engine.options.context_parallel == 4
    assert LTX2Options().context_parallel == 1


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_a_rank_on_cuda_runs_on_its_own_gpu(tmp_path: Path) -> None:
    """The rank code path with CUDA: rank 1 of 2 runs on cuda:1, under the group's options
    as they are (options rebuilt with device cuda:1 would be refused: with context_parallel
    > 1 only 'cuda' is accepted). Without a GPU here, set-up then says there is none."""
    options = tiny_options(tmp_path / "model", context_parallel=2, device="cuda")
    member = Rank(1, 2, device=options.device, timeout_s=5)
    engine = rank_engine(options, member, None, None)
    assert (engine.device, engine.options.device) == ("cuda:1", "cuda")
    with pytest.raises(EngineUnavailable, match="no CUDA device"):
        engine.setup()
