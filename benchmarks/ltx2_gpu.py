"""LTX-2 on one GPU: seconds per clip and peak GPU memory, each speed option on and off.

Builds the full-size LTX-2 (19B) transformer, text connectors, video and audio VAEs, vocoder
and x2 latent upsampler from their published configurations (diffusers' defaults for these
classes are the Lightricks/LTX-2 configuration), plus a Gemma-3-12B text encoder from its
published configuration, all with random weights: speed does not depend on weight values,
and nothing is downloaded. The pipeline then runs through runbase's own `LTX2Engine`, as the
server runs it, for a 4 s clip (97 frames, audio on) at 480p, 720p and 1080p (16:9), and the
result goes through the real MP4 writer.

    python benchmarks/ltx2_gpu.py                      # every variant, 480p/720p/1080p
    python benchmarks/ltx2_gpu.py --variants baseline,fp8 --resolutions 1080p --runs 3
    python benchmarks/ltx2_gpu.py --dry-run            # no GPU needed: configs and the plan
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
builds its own copy of the random model on its GPU (seeded alike), since a 19B model cannot
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

# google/gemma-3-12b-it, as published (the LTX-2 text encoder). Rope details are left to
# transformers' defaults: they cost nothing and do not change the speed.
GEMMA3_12B_TEXT = {
    "vocab_size": 262_208,
    "hidden_size": 3840,
    "intermediate_size": 15_360,
    "num_hidden_layers": 48,
    "num_attention_heads": 16,
    "num_key_value_heads": 8,
    "head_dim": 256,
    "query_pre_attn_scalar": 256,
    "sliding_window": 1024,
    "max_position_embeddings": 131_072,
}
GEMMA3_12B_VISION = {
    "hidden_size": 1152,
    "intermediate_size": 4304,
    "num_hidden_layers": 27,
    "num_attention_heads": 16,
    "image_size": 896,
    "patch_size": 14,
    "vision_use_head": False,
}
# LTX-2's published scheduler configuration (the distilled variants replace it anyway).
SCHEDULER = {
    "use_dynamic_shifting": True,
    "base_shift": 0.95,
    "max_shift": 2.05,
    "base_image_seq_len": 1024,
    "max_image_seq_len": 4096,
    "shift_terminal": 0.1,
}


# ---- the model -----------------------------------------------------------------------------


def build_components(device: str, dtype: Any) -> tuple[dict[str, Any], Any]:
    """Every LTX-2 component with random weights, created directly on `device` in `dtype`.

    On the "meta" device nothing is allocated: the dry run uses that to check the configs.
    """
    import torch
    from diffusers import (
        AutoencoderKLLTX2Audio,
        AutoencoderKLLTX2Video,
        FlowMatchEulerDiscreteScheduler,
        LTX2VideoTransformer3DModel,
    )
    from diffusers.pipelines.ltx2 import LTX2LatentUpsamplerModel, LTX2TextConnectors
    from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration

    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)  # weights are born in bf16: 19B fp32 would not fit
    try:
        with torch.device(device):
            text_encoder = Gemma3ForConditionalGeneration(
                Gemma3Config(
                    text_config=GEMMA3_12B_TEXT,
                    vision_config=GEMMA3_12B_VISION,
                    mm_tokens_per_image=256,
                )
            ).eval()
            components = {
                "transformer": LTX2VideoTransformer3DModel().eval(),
                "connectors": LTX2TextConnectors().eval(),
                "vae": AutoencoderKLLTX2Video().eval(),
                "audio_vae": AutoencoderKLLTX2Audio().eval(),
                "vocoder": LTX2Vocoder().eval(),
                "text_encoder": text_encoder,
            }
            upsampler = LTX2LatentUpsamplerModel().eval()
    finally:
        torch.set_default_dtype(previous)
    components.update(
        scheduler=FlowMatchEulerDiscreteScheduler(**SCHEDULER),
        tokenizer=byte_tokenizer(),
        processor=None,
        prompt_enhancer=None,
        duration_head=None,
    )
    return components, upsampler


def byte_tokenizer() -> Any:
    """A Gemma tokenizer built in memory (byte fallback): any prompt, no download. The text
    encoder pads every prompt to the same length, so its cost does not depend on the ids."""
    from transformers import GemmaTokenizer

    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4}
    vocab.update({f"<0x{b:02X}>": 5 + b for b in range(256)})
    return GemmaTokenizer(vocab=vocab, merges=[])


def check_components(components: dict[str, Any], upsampler: Any) -> list[str]:
    """Parameter counts, and the shapes the components must agree on."""
    lines = []
    for name, module in [*components.items(), ("latent_upsampler", upsampler)]:
        if hasattr(module, "parameters"):
            count = sum(p.numel() for p in module.parameters())
            lines.append(f"  {name:<17} {count / 1e9:7.3f} B parameters")
    text = components["text_encoder"].config.text_config
    connectors = components["connectors"].config
    transformer = components["transformer"].config
    if connectors.caption_channels != text.hidden_size:
        raise SystemExit("connectors.caption_channels must equal the text hidden size")
    if connectors.text_proj_in_factor != text.num_hidden_layers + 1:
        raise SystemExit("connectors.text_proj_in_factor must be the text layers + 1")
    if transformer.in_channels != components["vae"].config.latent_channels:
        raise SystemExit("the transformer's channels must match the video VAE's latents")
    return lines


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


_BUILT: dict[str, Any] = {}


def build_on_this_gpu(part: str) -> Any:
    """The random-weight pipeline or upsampler, built once per process on its current GPU."""
    import torch
    from diffusers import LTX2Pipeline

    if not _BUILT:
        torch.manual_seed(0)  # the same weights on every rank
        components, upsampler = build_components(
            f"cuda:{torch.cuda.current_device()}", torch.bfloat16
        )
        _BUILT.update(pipeline=LTX2Pipeline(**components), upsampler=upsampler)
    return _BUILT[part]


class RandomWeights:
    """Stands for the random model in a context-parallel run: pickled to each rank, it is
    built there, on the rank's GPU."""

    def __init__(self, part: str) -> None:
        self.part = part

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (build_on_this_gpu, (self.part,))


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
        # Pickled by module name (not __main__), which the rank processes can import.
        here = str(Path(__file__).resolve().parent)
        sys.path.insert(0, here)
        os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [here, os.getenv("PYTHONPATH")]))
        import ltx2_gpu

        pipeline: Any = ltx2_gpu.RandomWeights("pipeline")
        upsampler: Any = ltx2_gpu.RandomWeights("upsampler")
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
    print("LTX-2 components (random weights, built on the meta device: no memory used)")
    for line in check_components(components, upsampler):
        print(line)
    print(f"\nclip: {NUM_FRAMES} frames at 24 fps, {RATIO}, audio on; prompt {len(PROMPT)} chars")
    print(f"{'variant':<14} {'res':<6} {'output':<10} {'stages (w x h, steps)':<34} tokens")
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
            print(f"{variant:<14} {resolution:<6} {output:<10} {described:<34} {tokens}")
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
