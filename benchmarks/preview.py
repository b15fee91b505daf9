"""How much the preview engine costs on top of encoding alone.

For 480p, 720p and 1080p (16:9, 4 s, 97 frames, audio on) this measures, interleaved in one
process so that both see the same machine state:

- preview: `PreviewEngine().generate(...)` end to end (scene, soundtrack with speech,
  rendering, H.264 + AAC encoding, MP4 muxing);
- encode alone: `write_mp4` of the same number of frames of the same size with the same
  audio, the frames being one pre-rendered noise frame repeated (no rendering at all). This
  is the floor: what the writer costs for this geometry.

The ratio is preview / encode alone; the realtime factor is clip seconds / preview seconds.
Run it from the repository root:

    .venv/bin/python benchmarks/preview.py [--runs 5] [--cores 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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
from runbase.engines.preview.soundtrack import compose_soundtrack
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


def time_preview(engine: PreviewEngine, request: GenerationRequest) -> float:
    start = time.perf_counter()
    engine.generate(request, NullSink())
    return time.perf_counter() - start


def time_encode(request: GenerationRequest, frame: np.ndarray, audio: np.ndarray) -> float:
    start = time.perf_counter()
    write_mp4(
        request.scratch_dir / "encode_only.mp4",
        repeat_frame(frame, request.num_frames),
        width=request.width,
        height=request.height,
        fps=request.fps,
        num_frames=request.num_frames,
        audio=audio,
    )
    return time.perf_counter() - start


def run_benchmark(runs: int) -> list[dict[str, Any]]:
    """Steps: 1. set up every resolution, 2. one warm-up of each, 3. `runs` interleaved rounds."""
    engine = PreviewEngine()
    engine.setup()
    with tempfile.TemporaryDirectory(prefix="runbase-bench-") as tmp:
        cases = []
        for resolution in RESOLUTIONS:
            scratch = Path(tmp) / resolution
            scratch.mkdir()
            request = make_request(resolution, scratch)
            rng = np.random.default_rng(0)
            noise = rng.integers(0, 256, (request.height, request.width, 3), dtype=np.uint8)
            duration = request.num_frames / request.fps
            audio = compose_soundtrack(PROMPT, duration=duration, seed=SEED).samples
            cases.append((resolution, request, noise, audio))

        timings: dict[str, dict[str, list[float]]] = {
            name: {"preview": [], "encode": []} for name, *_ in cases
        }
        for round_index in range(runs + 1):
            for resolution, request, noise, audio in cases:
                # Alternate which goes first, so neither always inherits a warm cache.
                order = ("preview", "encode") if round_index % 2 else ("encode", "preview")
                for kind in order:
                    if kind == "preview":
                        seconds = time_preview(engine, request)
                    else:
                        seconds = time_encode(request, noise, audio)
                    if round_index:  # round 0 is the warm-up
                        timings[resolution][kind].append(seconds)

    results = []
    for resolution, request, _, _ in cases:
        preview = statistics.median(timings[resolution]["preview"])
        encode = statistics.median(timings[resolution]["encode"])
        clip = request.num_frames / request.fps
        results.append(
            {
                "resolution": resolution,
                "width": request.width,
                "height": request.height,
                "frames": request.num_frames,
                "preview_s": timings[resolution]["preview"],
                "encode_s": timings[resolution]["encode"],
                "preview_median_s": preview,
                "encode_median_s": encode,
                "ratio": preview / encode,
                "realtime_factor": clip / preview,
            }
        )
    return results


def print_table(results: list[dict[str, Any]], command: str, cores: int, runs: int) -> None:
    print(f"Command: `{command}`")
    print(f"Machine: {platform.processor() or platform.machine()}, {cores} cores, {runs} runs")
    print()
    print("| resolution | preview median s | encode-alone median s | ratio | realtime factor |")
    print("|---|---|---|---|---|")
    for row in results:
        size = f"{row['resolution']} ({row['width']}x{row['height']}, {row['frames']} frames)"
        print(
            f"| {size} | {row['preview_median_s']:.2f} | {row['encode_median_s']:.2f} "
            f"| {row['ratio']:.2f} | {row['realtime_factor']:.1f}x |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5, help="measured rounds (default 5)")
    parser.add_argument("--cores", type=int, help="pin the process to this many cores")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args()
    if args.cores:
        os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[: args.cores]))
    cores = len(os.sched_getaffinity(0))
    command = shlex.join([Path(sys.executable).name, *sys.argv])
    results = run_benchmark(args.runs)
    if args.json:
        print(json.dumps({"command": command, "cores": cores, "results": results}, indent=2))
    else:
        print_table(results, command, cores, args.runs)


if __name__ == "__main__":
    main()
