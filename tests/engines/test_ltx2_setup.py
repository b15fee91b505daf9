"""Setting the LTX-2 engine up: options, library versions, weights, FP8, fallbacks.

What must be refused or reported before a GPU sees the model: combinations of options that
cannot work, libraries too old for diffusers' LTX-2 pipelines, missing weights, an FP8
path that fails, and a recipe the loaded weights cannot follow.
"""

from __future__ import annotations

import ast
import logging
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # any hub access would fail loudly

import subprocess
import sys
import tomllib
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from support import RecordingSink

pytest.importorskip("diffusers", reason="the LTX-2 engine needs the ltx2 extra")

import torch
from ltx2_tiny import assert_contract_mp4, make_request, tiny_components, tiny_upsampler

from runbase.config import Settings
from runbase.core.seedance import MODEL_ID
from runbase.engines import load_engine
from runbase.engines.ltx2 import LTX2Engine, LTX2Options
from runbase.engines.ltx2.requirements import FLOORS, TRANSFORMERS_NAMES
from runbase.engines.ltx2.speed import quantize_fp8
from runbase.errors import EngineUnavailable

ROOT = Path(__file__).resolve().parents[2]

# ---- library versions ----------------------------------------------------------------------


def test_the_extra_asks_for_the_versions_the_engine_needs() -> None:
    """pyproject's `ltx2` floors are the ones the engine documents and checks: transformers
    5.10.1 (the first release with both Gemma 4 classes) and torch 2.6 (the first with
    torch.accelerator.device_count, which context parallelism calls)."""
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    floors = {}
    for requirement in extra["ltx2"]:
        if requirement.startswith("runbase["):  # the server, which every server extra implies
            continue
        name, _, version = requirement.partition(">=")
        floors[name.strip()] = version.strip()
    assert floors == FLOORS
    assert (floors["transformers"], floors["torch"]) == ("5.10.1", "2.6")


def test_what_diffusers_imports_from_transformers_is_in_the_floor_release() -> None:
    """Every name diffusers' LTX-2 pipelines (the modules the engine loads, and theirs)
    import from transformers is one the floor release, transformers 5.10.1, exports: were
    diffusers to need another, this fails and the floor must be checked again."""
    import diffusers.pipelines.ltx2 as package

    folder = Path(package.__file__).parent
    modules = ["pipeline_ltx2", "pipeline_ltx2_image2video", "pipeline_ltx2_condition"]
    modules += ["latent_upsampler", "utils"]
    seen: set[str] = set()
    needed: set[str] = set()
    while modules:
        module = modules.pop()
        if module in seen:
            continue
        seen.add(module)
        for node in ast.walk(ast.parse((folder / f"{module}.py").read_text())):
            if not isinstance(node, ast.ImportFrom):
                continue
            if node.level == 1 and node.module:
                modules.append(node.module.split(".")[0])
            elif node.level == 0 and (node.module or "").split(".")[0] == "transformers":
                needed.update(alias.name for alias in node.names)
    assert "pipeline_ltx2_condition" in seen and "connectors" in seen
    assert needed and needed <= set(TRANSFORMERS_NAMES), needed - set(TRANSFORMERS_NAMES)


def test_a_transformers_without_gemma_4_unified_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    """transformers 5.9 exports every name diffusers needs but Gemma 4 Unified: the engine
    names the upgrade instead of failing inside diffusers' imports."""
    older = types.ModuleType("transformers")
    older.__version__ = "5.9.0"  # type: ignore[attr-defined]
    for name in TRANSFORMERS_NAMES:
        if name != "Gemma4UnifiedForConditionalGeneration":
            setattr(older, name, type(name, (), {}))
    monkeypatch.setitem(sys.modules, "transformers", older)
    with pytest.raises(EngineUnavailable) as caught:
        LTX2Engine(LTX2Options(device="cpu"), pipeline=object()).setup()
    assert "transformers 5.9.0 lacks Gemma4UnifiedForConditionalGeneration" in str(caught.value)
    assert "pip install 'transformers>=5.10.1'" in str(caught.value)


def test_context_parallelism_on_a_torch_without_accelerator_is_named(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delattr(torch.accelerator, "device_count")
    with pytest.raises(EngineUnavailable, match=r"lacks: install torch>=2\.6"):
        LTX2Engine(LTX2Options(device="cpu", context_parallel=2), pipeline=object()).setup()


def test_missing_libraries_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "diffusers", None)  # import diffusers now fails
    with pytest.raises(EngineUnavailable, match=r"diffusers is missing.*runbase\[ltx2\]"):
        LTX2Engine(LTX2Options(device="cpu")).setup()


# ---- options -------------------------------------------------------------------------------


def test_settings_reach_the_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RUNBASE_LTX2_MODEL", "/models/ltx-2")
    monkeypatch.setenv("RUNBASE_LTX2_CPU_OFFLOAD", "model")
    monkeypatch.setenv("RUNBASE_LTX2_FP8", "true")
    monkeypatch.setenv("RUNBASE_LTX2_MAX_GENERATION_SIDE", "256")
    monkeypatch.setenv("RUNBASE_ALLOW_DOWNLOADS", "true")
    engine = load_engine("ltx2", Settings())
    assert isinstance(engine, LTX2Engine)
    options = engine.options
    assert (options.model, options.cpu_offload, options.fp8) == ("/models/ltx-2", "model", True)
    assert (options.max_generation_side, options.allow_downloads) == (256, True)
    assert (options.distilled, options.dtype, options.two_stage) == (True, "bfloat16", "auto")
    with pytest.raises(ValueError, match="cpu_offload must be one of off, model, sequential"):
        LTX2Options(cpu_offload="always")
    with pytest.raises(ValueError, match="device must be 'cuda', 'cuda:N' or 'cpu'"):
        LTX2Options(device="mps")


def test_fp8_needs_bfloat16_at_configuration_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """torchao's FP8 matmuls take bf16 weights: FP8 with float16 or float32 is refused when
    the engine is built, naming the setting, not at the first run on a GPU."""
    for dtype in ("float16", "float32"):
        with pytest.raises(ValueError, match=r"fp8 \(RUNBASE_LTX2_FP8\) needs dtype bfloat16"):
            LTX2Options(fp8=True, dtype=dtype)
    monkeypatch.setenv("RUNBASE_LTX2_FP8", "true")
    monkeypatch.setenv("RUNBASE_LTX2_DTYPE", "float16")
    with pytest.raises(ValueError, match="RUNBASE_LTX2_DTYPE=bfloat16"):
        load_engine("ltx2", Settings())
    assert LTX2Options(fp8=True).dtype == "bfloat16"


def test_a_failing_torchao_falls_back_to_fp8_storage(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A torchao that imports but fails (an incompatible kernel, say) is tried on a probe
    layer first: the engine stores FP8 weights instead, logged, and the model is intact."""

    def quantize_(module: Any, config: Any, **kwargs: Any) -> None:
        raise RuntimeError("_scaled_mm is not supported on this device")

    # Built before the stand-in is installed: diffusers' lazy imports look for torchao.
    transformer = tiny_components()["transformer"]
    broken = types.ModuleType("torchao.quantization")
    broken.quantize_ = quantize_  # type: ignore[attr-defined]
    broken.Float8DynamicActivationFloat8WeightConfig = lambda **kwargs: object()  # type: ignore[attr-defined]
    broken.PerRow = lambda: object()  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torchao", types.ModuleType("torchao"))
    monkeypatch.setitem(sys.modules, "torchao.quantization", broken)
    with caplog.at_level(logging.WARNING):
        mode = quantize_fp8(torch, transformer, torch.device("cpu"), use_torchao=True)
    assert mode == "storage"
    assert any("_scaled_mm is not supported" in r.getMessage() for r in caplog.records)
    weight = transformer.transformer_blocks[0].attn1.to_q.weight
    assert weight.dtype == torch.float8_e4m3fn  # stored in FP8, computed in float32


# ---- weights -------------------------------------------------------------------------------


def test_loads_weights_from_a_folder(tmp_path: Path) -> None:
    """The production path: from_pretrained on a local folder, offline, upsampler found;
    optional components the engine never calls (a prompt enhancer here) are not loaded."""
    from diffusers import LTX2Pipeline

    components = tiny_components()
    components["prompt_enhancer"] = tiny_components()["text_encoder"]
    folder = tmp_path / "ltx-2"
    LTX2Pipeline(**components).save_pretrained(folder)
    assert (folder / "prompt_enhancer").is_dir()
    tiny_upsampler().save_pretrained(folder / "latent_upsampler")
    options = LTX2Options(
        model=str(folder),
        device="cpu",
        dtype="float32",
        max_generation_side=128,
        max_sequence_length=256,
        preset="superfast",
        two_stage="on",
    )
    engine = LTX2Engine(options)
    engine.setup()
    assert engine.speed["two_stage"] == "on"
    assert engine._loaded is not None
    assert all(p.prompt_enhancer is None for p in engine._loaded.pipelines.values())
    request = make_request(tmp_path / "run", generate_audio=False)
    result = engine.generate(request, RecordingSink())
    assert_contract_mp4(result.files[0], request)
    assert result.metadata["model"] == str(folder) and result.metadata["two_stage"]


def test_missing_weights_are_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from huggingface_hub import constants

    missing = tmp_path / "no-such-model"
    with pytest.raises(EngineUnavailable, match=r"no folder .*no-such-model"):
        LTX2Engine(LTX2Options(model=str(missing), device="cpu")).setup()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(EngineUnavailable) as caught:
        LTX2Engine(LTX2Options(model="Lightricks/Not-Cached", device="cpu")).setup()
    message = str(caught.value)
    assert "'Lightricks/Not-Cached' is neither a local folder nor in the Hugging Face cache" in (
        message
    )
    assert "RUNBASE_ALLOW_DOWNLOADS" in message and "gated" in message
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EngineUnavailable, match=r"has no model_index\.json"):
        LTX2Engine(LTX2Options(model=str(empty), device="cpu")).setup()
    (empty / "model_index.json").write_text("{}")
    named = LTX2Options(model=str(empty), upsampler=str(tmp_path / "up"), device="cpu")
    with pytest.raises(EngineUnavailable, match=r"latent upsampler: no folder .*up"):
        LTX2Engine(named).setup()
    with pytest.raises(EngineUnavailable, match="no latent upsampler"):
        LTX2Engine(LTX2Options(device="cpu", two_stage="on"), pipeline=object()).setup()


def test_a_missing_upsampler_makes_1080p_one_stage_and_says_so(tmp_path: Path) -> None:
    """Under "auto", a model without latent_upsampler/ generates 1080p in one stage; the
    plan carries the reason, which each such run logs."""
    request = make_request(tmp_path, resolution="1080p")
    without = LTX2Engine(LTX2Options(device="cpu")).plan(request)
    assert not without.two_stage
    assert without.note is not None and "needs the latent upsampler" in without.note
    with_one = LTX2Engine(LTX2Options(device="cpu"), upsampler=object()).plan(request)
    assert with_one.two_stage and with_one.note is None
    small = LTX2Engine(LTX2Options(device="cpu")).plan(make_request(tmp_path, resolution="720p"))
    assert not small.two_stage and small.note is None  # nothing was asked for


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_no_cuda_device_is_named(tmp_path: Path) -> None:
    with pytest.raises(EngineUnavailable) as caught:
        LTX2Engine(LTX2Options(model=str(tmp_path / "absent"))).setup()
    message = str(caught.value)
    assert "no CUDA device" in message and "absent" in message  # both problems at once


def test_the_server_never_imports_torch() -> None:
    code = (
        "import sys\n"
        "from runbase.config import Settings\n"
        "from runbase.engines import load_engine\n"
        "load_engine('ltx2', Settings())\n"
        "assert 'torch' not in sys.modules and 'diffusers' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


@pytest.mark.slow
def test_server_falls_back_to_preview_without_weights(
    start_server: Callable[..., Any], tmp_path: Path
) -> None:
    server = start_server(engines=["ltx2", "preview"], ltx2_model=str(tmp_path / "no-weights"))
    key = server.new_key()
    with server.client(key) as client:
        response = client.post(
            "/api/v1/runs",
            json={
                "model": MODEL_ID,
                "input": {"prompt": "A quiet harbour at dawn.", "resolution": "480p"},
            },
        )
        assert response.status_code == 200, response.text
    run = server.wait_for_run(key, response.json()["id"], timeout=120)
    assert run["status"] == "succeeded", run
    assert run["backend"] == "preview"
    [note] = [line for line in run["logs"] if "'ltx2' unavailable" in line]
    assert "no-weights" in note


def test_the_benchmark_builds_the_default_checkpoint() -> None:
    """benchmarks/ltx2_gpu.py measures LTX-2.5, the engine's default (Gemma 4 text encoder,
    48 kHz vocoder), not LTX-2.0; its dry run counts the parameters without a GPU."""
    script = ROOT / "benchmarks" / "ltx2_gpu.py"
    done = subprocess.run(
        [
            sys.executable,
            str(script),
            "--dry-run",
            "--variants",
            "baseline",
            "--resolutions",
            "1080p",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    out = done.stdout
    assert LTX2Options().model == "Lightricks/LTX-2.5-Diffusers"
    assert "Gemma4UnifiedForConditionalGeneration" in out and "Gemma3" not in out
    assert "LTX2VocoderWithBWE" in out and "output_sampling_rate=48000" in out
    assert "ff_bias=False, use_keyframes_abs_pos_embedding=True" in out
    assert "total              35.709 B   66.5 GiB (bf16)" in out  # docs/ltx2.md's figures
    assert "960x544 x8, 1920x1088 x3" in out
