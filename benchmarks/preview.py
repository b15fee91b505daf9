"""How much the preview engine costs on top of encoding alone.

For 480p, 720p and 1080p (16:9, 4 s, 97 frames, audio on) this measures, interleaved in one
process so that both see the same machine state:

- preview: `PreviewEngine().generate(...)` end to end (scene, soundtrack with speech,
  rendering, H.264 + AAC encoding, MP4 muxing);
- encode alone: `write_mp4` of the same number of frames of the same size with the same
  audio, the frames being one pre-rendered noise frame repeated (no rendering at all). This
  is the floor: what the writer costs for this geometry when nothing moves;
- encode own frames: `write_mp4` of the preview's own frames, rendered beforehand. Moving
  pictures cost x264 more than a repeated frame; this column shows how much of the gap is
  the encoder's work on real motion rather than the preview's rendering.

The ratio is preview / encode alone; the realtime factor is clip seconds / preview seconds.
On a shared machine `--clean` keeps only rounds in which other processes used (almost) no
CPU (read from /proc/stat, so Linux only). Run it from the repository root:

    .venv/bin/python benchmarks/preview.py [--runs 5] [--cores 2] [--clean] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shlex
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from runbase.core.seedance import MODEL_ID, output_geometry, validate_input
from runbase.engines.base import GenerationRequest
from runbase.engines.preview import PreviewEngine
from runbase.engines.preview.frames import Overlays, film_scene
from runbase.engines.preview.scene import describe_scene
from runbase.engines.preview.soundtrack import Soundtrack, compose_soundtrack
from runbase.media.video import write_mp4

PROMPT = (
    "A city street at night under neon signs, the camera slowly zooms in. "
    '"Where are you going?" she asks.'
)
SEED = 7
RESOLUTIONS = ("480p", "720p", "1080p")


class NullSink:
    """A ProgressSink that ignores progress and never stops."""

    def progress(self, fraction: float, message: str = "") -> None:
        pass

    def log(self, message: str) -> None:
        pass

    def should_stop(self) -> bool:
        return False


def make_request(resolution: str, scratch: Path) -> GenerationRequest:
    validated = validate_input(
        {"prompt": PROMPT, "resolution": resolution, "aspect_ratio": "16:9", "duration": "4"}
    )
    geometry = output_geometry(validated)
    return GenerationRequest(
        run_id=f"bench_{resolution}",
        model=MODEL_ID,
        input=validated,
        width=geometry.width,
        height=geometry.height,
        num_frames=geometry.num_frames,
        fps=geometry.fps,
        audio=True,
        seed=SEED,
        scratch_dir=scratch,
    )


def repeat_frame(frame: np.ndarray, count: int) -> Iterator[np.ndarray]:
    for _ in range(count):
        yield frame


def render_own_frames(request: GenerationRequest, soundtrack: Soundtrack) -> list[np.ndarray]:
    """The frames `PreviewEngine` renders for `request`, rendered up front."""
    scene = describe_scene(PROMPT, seed=SEED, camera_fixed=False)
    film = film_scene(scene, request.width, request.height, request.num_frames, request.fps)
    overlays = Overlays.build(
        request.width, request.height, request.num_frames, request.fps, soundtrack.lines
    )
    return [overlays.finish(film.picture(i), i) for i in range(request.num_frames)]


def busy_seconds() -> float:
    """CPU seconds all processes have used so far (Linux /proc/stat), for --clean."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle and iowait
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    usage = [resource.getrusage(who) for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)]
    return sum(u.ru_utime + u.ru_stime for u in usage)


def time_preview(engine: PreviewEngine, request: GenerationRequest) -> float:
    start = time.perf_counter()
    engine.generate(request, NullSink())
    return time.perf_counter() - start


def time_encode(
    request: GenerationRequest, frames: Iterator[np.ndarray], audio: np.ndarray
) -> float:
    start = time.perf_counter()
    write_mp4(
        request.scratch_dir / "encode_only.mp4",
        frames,
        width=request.width,
        height=request.height,
        fps=request.fps,
        num_frames=request.num_frames,
        audio=audio,
    )
    return time.perf_counter() - start


KINDS = ("preview", "encode", "own")


def run_benchmark(runs: int, clean: bool) -> tuple[list[dict[str, Any]], int]:
    """Time every resolution; returns the rows and how many rounds were discarded.

    1. Set up every resolution: request, noise frame, soundtrack, the preview's own frames.
    2. One warm-up round (imports, fonts, caches), then rounds until `runs` are kept; each
       round times the three kinds back to back for every resolution, in rotating order.
    3. With `clean`, a round is discarded when other processes used more than 5% of a core
       while it ran.
    """
    engine = PreviewEngine()
    engine.setup()
    discarded = 0
    with tempfile.TemporaryDirectory(prefix="runbase-bench-") as tmp:
        cases = []
        for resolution in RESOLUTIONS:
            scratch = Path(tmp) / resolution
            scratch.mkdir()
            request = make_request(resolution, scratch)
            rng = np.random.default_rng(0)
            noise = rng.integers(0, 256, (request.height, request.width, 3), dtype=np.uint8)
            duration = request.num_frames / request.fps
            soundtrack = compose_soundtrack(PROMPT, duration=duration, seed=SEED)
            own = render_own_frames(request, soundtrack)
            cases.append((resolution, request, noise, soundtrack.samples, own))

        timings: dict[str, dict[str, list[float]]] = {
            name: {kind: [] for kind in KINDS} for name, *_ in cases
        }
        kept, attempts = -1, 0  # round 0 is the warm-up
        while kept < runs and attempts < 20 * (runs + 1):
            attempts += 1
            rotation = attempts % len(KINDS)
            order = KINDS[rotation:] + KINDS[:rotation]
            measured: dict[str, dict[str, float]] = {}
            others = 0.0
            for resolution, request, noise, audio, own in cases:
                measured[resolution] = {}
                for kind in order:
                    busy, mine = busy_seconds(), own_cpu_seconds()
                    if kind == "preview":
                        seconds = time_preview(engine, request)
                    elif kind == "encode":
                        seconds = time_encode(
                            request, repeat_frame(noise, request.num_frames), audio
                        )
                    else:
                        seconds = time_encode(request, iter(own), audio)
                    used = busy_seconds() - busy - (own_cpu_seconds() - mine)
                    others = max(others, used / seconds)
                    measured[resolution][kind] = seconds
            if clean and kept >= 0 and others > 0.05:
                discarded += 1
                time.sleep(2)
                continue
            if kept >= 0:
                for resolution, values in measured.items():
                    for kind, seconds in values.items():
                        timings[resolution][kind].append(seconds)
            kept += 1

    results = []
    for resolution, request, *_ in cases:
        medians = {kind: statistics.median(timings[resolution][kind]) for kind in KINDS}
        clip = request.num_frames / request.fps
        results.append(
            {
                "resolution": resolution,
                "width": request.width,
                "height": request.height,
                "frames": request.num_frames,
                **{f"{kind}_s": timings[resolution][kind] for kind in KINDS},
                "preview_median_s": medians["preview"],
                "encode_median_s": medians["encode"],
                "own_median_s": medians["own"],
                "ratio": medians["preview"] / medians["encode"],
                "ratio_own": medians["preview"] / medians["own"],
                "realtime_factor": clip / medians["preview"],
            }
        )
    return results, discarded


def print_table(results: list[dict[str, Any]], header: list[str]) -> None:
    for line in header:
        print(line)
    print()
    print(
        "| resolution | preview median s | encode-alone median s | ratio | realtime factor "
        "| encode own frames median s | ratio to own frames |"
    )
    print("|---|---|---|---|---|---|---|")
    for row in results:
        size = f"{row['resolution']} ({row['width']}x{row['height']}, {row['frames']} frames)"
        print(
            f"| {size} | {row['preview_median_s']:.2f} | {row['encode_median_s']:.2f} "
            f"| {row['ratio']:.2f} | {row['realtime_factor']:.1f}x "
            f"| {row['own_median_s']:.2f} | {row['ratio_own']:.2f} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="measured rounds (default 5)")
    parser.add_argument("--cores", type=int, help="pin the process to this many cores")
    parser.add_argument(
        "--clean", action="store_true", help="discard rounds disturbed by other processes"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    if args.cores:
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[: args.cores]))
    cores = len(os.sched_getaffinity(0))
    command = shlex.join([Path(sys.executable).name, *sys.argv])
    results, discarded = run_benchmark(args.runs, args.clean)
    if args.json:
        report = {"command": command, "cores": cores, "discarded_rounds": discarded}
        print(json.dumps({**report, "results": results}, indent=2))
        return
    machine = platform.processor() or platform.machine()
    note = f", {discarded} disturbed rounds discarded" if args.clean else ""
    header = [f"Command: `{command}`", f"Machine: {machine}, {cores} cores, {args.runs} runs{note}"]
    print_table(results, header)


if __name__ == "__main__":
    main()
