"""LTX-2 on one GPU: seconds per clip and peak GPU memory, each speed option on and off.

Builds the engine's default checkpoint, LTX-2.5 (the 19 B transformer and 3 B text
connectors of the "22B" model, the Gemma 4 12B text encoder, video and audio VAEs, the
48 kHz vocoder, the x2 latent upsampler), from the configuration in ltx2_5_config.py (with
where each value comes from, and what could not be confirmed), with random weights: speed
does not depend on weight values, and nothing is downloaded (ltx2_model.py). The pipeline
then runs through runbase's own `LTX2Engine`, as the server runs it, for a 4 s clip (97
frames, audio on) at 480p, 720p and 1080p (16:9), and the result goes through the real MP4
writer.

    python benchmarks/ltx2_gpu.py                      # every variant, 480p/720p/1080p
    python benchmarks/ltx2_gpu.py --variants baseline,fp8 --resolutions 1080p --runs 3
    python benchmarks/ltx2_gpu.py --dry-run            # no GPU: parameters per component, plan
    python benchmarks/ltx2_gpu.py --json results.json
    python benchmarks/ltx2_gpu.py --context-parallel 4 --variants baseline  # 4 GPUs per clip

Variants (the baseline is the engine's defaults: distilled 8 steps, bf16, VAE tiling and the
two-stage recipe on "auto", that is for 1080p only):

    baseline        defaults
    fp8             ltx2_fp8 (FP8 matmuls with torchao, else FP8 storage)
    compile         ltx2_compile (regional torch.compile; the warm-up run pays the compile)
    fp8+compile     both
    offload         ltx2_cpu_offload=model
    tiling-on/off   ltx2_vae_tiling forced on / off
    two-stage-on/off  ltx2_two_stage forced on / off
    guided          ltx2_distilled=false: 30 guided steps (CFG + STG + modality guidance)

A variant equal to the baseline at some size (tiling-on at 1080p, say) is not run again there.
Variants that change the model in place (fp8, compile, offload) each run in a fresh process;
the others share one. Each measurement is one warm-up clip, then `--runs` timed clips
(median reported); peak memory is `torch.cuda.max_memory_allocated` over the timed clips.

`--context-parallel N` runs every clip on N GPUs (ltx2_context_parallel): each rank process
builds its own copy of the random model on its GPU (seeded alike), since a 36 B model cannot
be sent to it. Peak memory is then not measured (it is in the rank processes): "nan".
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ltx2_model import RandomWeights, build_components, describe_components

from runbase.core.seedance import SIZES
from runbase.engines.base import GenerationRequest
from runbase.engines.ltx2 import LTX2Engine, LTX2Options

RESOLUTIONS = ("480p", "720p", "1080p")
RATIO = "16:9"
NUM_FRAMES = 97  # 4 s at 24 fps
PROMPT = (
    "A fisherman in a yellow raincoat stands on a wooden pier at dawn, waves slapping the "
    'posts, gulls crying overhead. He turns to the camera and says "The sea is calm '
    'today." Warm low sunlight, gentle handheld camera, realistic documentary style.'
)
VARIANTS: dict[str, dict[str, Any]] = {
    "baseline": {},
    "fp8": {"fp8": True},
    "compile": {"compile": True},
    "fp8+compile": {"fp8": True, "compile": True},
    "offload": {"cpu_offload": "model"},
    "tiling-on": {"vae_tiling": "on"},
    "tiling-off": {"vae_tiling": "off"},
    "two-stage-on": {"two_stage": "on"},
    "two-stage-off": {"two_stage": "off"},
    "guided": {"distilled": False, "steps": 30, "two_stage": "off"},
}
# Variants that change the model in place get a process each; the rest share one.
SHARED = ("baseline", "tiling-on", "tiling-off", "two-stage-on", "two-stage-off", "guided")

# ---- one measurement -----------------------------------------------------------------------


class TimingSink:
    """A ProgressSink that notes when denoising (and decoding) ended."""

    def __init__(self) -> None:
        self.encoding_started: float | None = None

    def progress(self, fraction: float, message: str = "") -> None:
        if message == "encoding the video" and self.encoding_started is None:
            self.encoding_started = time.perf_counter()

    def log(self, message: str) -> None:
        pass

    def should_stop(self) -> bool:
        return False


def make_request(resolution: str, scratch: Path) -> GenerationRequest:
    width, height = SIZES[(resolution, RATIO)]
    scratch.mkdir(parents=True, exist_ok=True)
    return GenerationRequest(
        run_id=f"bench_{resolution}",
        model="bytedance/seedance-1.5-pro",
        input={"prompt": PROMPT, "resolution": resolution, "aspect_ratio": RATIO},
        width=width,
        height=height,
        num_frames=NUM_FRAMES,
        fps=24,
        audio=True,
        seed=42,
        scratch_dir=scratch,
    )


def options_for(variant: str, context_parallel: int = 1) -> LTX2Options:
    return LTX2Options(**VARIANTS[variant], context_parallel=context_parallel)


def same_as_baseline(variant: str, resolution: str) -> bool:
    if variant == "baseline":
        return False
    engine = LTX2Engine(options_for(variant), upsampler=object())
    baseline = LTX2Engine(options_for("baseline"), upsampler=object())
    request = make_request(resolution, Path(tempfile.gettempdir()))
    same_plan = engine.plan(request) == baseline.plan(request)
    return same_plan and set(VARIANTS[variant]) <= {"vae_tiling", "two_stage"}


def measure(
    engine: LTX2Engine, resolution: str, runs: int, warmup: int, scratch: Path
) -> dict[str, Any]:
    import torch

    request = make_request(resolution, scratch / resolution)
    plan = engine.plan(request)
    row: dict[str, Any] = {
        "resolution": resolution,
        "output": [request.width, request.height],
        "generation": [plan.width, plan.height],
        "two_stage": plan.two_stage,
        "tiled_decode": plan.tiled_decode,
    }
    try:
        started = time.perf_counter()
        for _ in range(warmup):
            row["speed"] = engine.generate(request, TimingSink()).metadata["speed"]
        row["warmup_s"] = round(time.perf_counter() - started, 2)
        totals, denoise, peaks = [], [], []
        for _ in range(runs):
            sink = TimingSink()
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            started = time.perf_counter()
            engine.generate(request, sink)
            torch.cuda.synchronize()
            ended = time.perf_counter()
            totals.append(ended - started)
            denoise.append((sink.encoding_started or ended) - started)
            parallel = engine.options.context_parallel > 1  # the model is in the ranks
            peaks.append(float("nan") if parallel else torch.cuda.max_memory_allocated() / 2**30)
    except Exception as exc:  # out of memory, above all: record it and go on
        row["error"] = f"{type(exc).__name__}: {exc}"[:300]
        torch.cuda.empty_cache()
        return row
    row["seconds_per_clip"] = round(statistics.median(totals), 2)
    row["generate_s"] = round(statistics.median(denoise), 2)
    row["encode_s"] = round(row["seconds_per_clip"] - row["generate_s"], 2)
    row["peak_gib"] = round(max(peaks), 1)
    return row


def run_worker(variants: Sequence[str], args: argparse.Namespace) -> list[dict[str, Any]]:
    """Build the model once and measure `variants` (this process's share) at every size."""
    import torch
    from diffusers import LTX2Pipeline

    started = time.perf_counter()
    if args.context_parallel > 1:
        # Pickled by module name, which the rank processes import from this folder.
        here = str(Path(__file__).resolve().parent)
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [here, os.getenv("PYTHONPATH")]))
        pipeline: Any = RandomWeights("pipeline")
        upsampler: Any = RandomWeights("upsampler")
    else:
        components, upsampler = build_components("cuda", torch.bfloat16)
        pipeline = LTX2Pipeline(**components)
        print(f"built the model in {time.perf_counter() - started:.0f} s", file=sys.stderr)
    rows = []
    with tempfile.TemporaryDirectory(prefix="ltx2-bench-") as scratch:
        for variant in variants:
            options = options_for(variant, args.context_parallel)
            engine = LTX2Engine(options, pipeline=pipeline, upsampler=upsampler)
            engine.setup()
            for resolution in args.resolutions:
                if same_as_baseline(variant, resolution):
                    continue
                row = measure(engine, resolution, args.runs, args.warmup, Path(scratch))
                row["variant"] = variant
                row["context_parallel"] = args.context_parallel
                print(json.dumps(row), file=sys.stderr)
                rows.append(row)
            engine.close()  # a context-parallel engine's ranks hold every GPU
    return rows


# ---- the whole benchmark -------------------------------------------------------------------


def machine() -> dict[str, Any]:
    import diffusers
    import torch

    return {
        "gpu": torch.cuda.get_device_name(),
        "gpu_memory_gib": round(torch.cuda.get_device_properties(0).total_memory / 2**30),
        "compute_capability": ".".join(map(str, torch.cuda.get_device_capability())),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "diffusers": diffusers.__version__,
        "python": platform.python_version(),
    }


def groups(variants: Sequence[str]) -> list[list[str]]:
    shared = [v for v in variants if v in SHARED]
    alone = [[v] for v in variants if v not in SHARED]
    return ([shared] if shared else []) + alone


def print_table(rows: list[dict[str, Any]]) -> None:
    print(
        f"{'variant':<14} {'res':<6} {'generated':<10} {'stages':<7} "
        f"{'s/clip':>7} {'model s':>8} {'encode s':>9} {'peak GiB':>9}"
    )
    for row in rows:
        generated = "x".join(map(str, row["generation"]))
        stages = "two" if row["two_stage"] else "one"
        if "error" in row:
            print(
                f"{row['variant']:<14} {row['resolution']:<6} {generated:<10} {stages:<7} "
                f"{row['error']}"
            )
            continue
        print(
            f"{row['variant']:<14} {row['resolution']:<6} {generated:<10} {stages:<7} "
            f"{row['seconds_per_clip']:>7.2f} {row['generate_s']:>8.2f} "
            f"{row['encode_s']:>9.2f} {row['peak_gib']:>9.1f}"
        )


def dry_run(args: argparse.Namespace) -> None:
    """Check every config by building the models on the meta device, and print the plan."""
    import torch

    components, upsampler = build_components("meta", torch.bfloat16)
    print("LTX-2.5 as configured in benchmarks/ltx2_5_config.py, built on the meta device (no")
    print("memory used): parameters, bf16 size, and the values no published file confirmed")
    for line in describe_components(components, upsampler):
        print(line)
    print(f"\nclip: {NUM_FRAMES} frames at 24 fps, {RATIO}, audio on; prompt {len(PROMPT)} chars")
    print(
        f"{'variant':<14} {'res':<6} {'output':<10} {'stages (w x h, steps)':<34} {'tiled':<6}"
        " tokens"
    )
    for variant in args.variants:
        for resolution in args.resolutions:
            if same_as_baseline(variant, resolution):
                continue
            options = options_for(variant)
            engine = LTX2Engine(options, upsampler=object())
            request = make_request(resolution, Path(tempfile.gettempdir()))
            plan = engine.plan(request)
            stages = (
                plan.stages if options.distilled else ((plan.width, plan.height, options.steps),)
            )
            latent_frames = (plan.num_frames - 1) // 8 + 1
            described = ", ".join(f"{w}x{h} x{steps}" for w, h, steps in stages)
            tokens = ", ".join(str(latent_frames * (h // 32) * (w // 32)) for w, h, _ in stages)
            output = f"{request.width}x{request.height}"
            tiled = "yes" if plan.tiled_decode else "no"
            print(f"{variant:<14} {resolution:<6} {output:<10} {described:<34} {tiled:<6} {tokens}")
    print("\nprocesses:", " | ".join("+".join(group) for group in groups(args.variants)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default="all", help="comma-separated, or 'all'")
    parser.add_argument("--resolutions", default=",".join(RESOLUTIONS))
    parser.add_argument("--runs", type=int, default=2, help="timed clips per measurement")
    parser.add_argument("--warmup", type=int, default=1, help="untimed clips first")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--dry-run", action="store_true", help="no GPU: configs and plan")
    parser.add_argument(
        "--context-parallel", type=int, default=1, help="GPUs per clip (ltx2_context_parallel)"
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # internal: one process's share
    args = parser.parse_args()
    args.variants = list(VARIANTS) if args.variants == "all" else args.variants.split(",")
    args.resolutions = args.resolutions.split(",")
    unknown = [v for v in args.variants if v not in VARIANTS]
    unknown += [r for r in args.resolutions if r not in RESOLUTIONS]
    if unknown:
        parser.error(f"unknown: {', '.join(unknown)}")

    if args.dry_run:
        dry_run(args)
        return
    try:
        import torch
    except ImportError as exc:
        raise SystemExit(
            "this benchmark needs the ltx2 extra: pip install 'runbase[ltx2]'"
        ) from exc
    if not torch.cuda.is_available():
        raise SystemExit(
            "this benchmark measures LTX-2 on a CUDA GPU, and torch sees none here; "
            "`--dry-run` checks the configurations and prints the plan without one"
        )
    if args.worker:
        print(json.dumps(run_worker(args.worker.split(","), args)))
        return

    rows: list[dict[str, Any]] = []
    for group in groups(args.variants):
        command = [
            sys.executable,
            __file__,
            "--worker",
            ",".join(group),
            "--resolutions",
            ",".join(args.resolutions),
            "--runs",
            str(args.runs),
            "--warmup",
            str(args.warmup),
            "--context-parallel",
            str(args.context_parallel),
        ]
        done = subprocess.run(command, stdout=subprocess.PIPE, text=True)
        if done.returncode != 0:
            rows.extend(
                {
                    "variant": v,
                    "resolution": "-",
                    "generation": [0, 0],
                    "two_stage": False,
                    "error": f"worker exited with {done.returncode}",
                }
                for v in group
            )
            continue
        rows.extend(json.loads(done.stdout.strip().splitlines()[-1]))
    info = machine()
    print(
        f"\n{info['gpu']} ({info['gpu_memory_gib']} GiB), torch {info['torch']}, "
        f"CUDA {info['cuda']}, diffusers {info['diffusers']}, "
        f"context parallel {args.context_parallel}"
    )
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "results": rows}, indent=2))


if __name__ == "__main__":
    main()
