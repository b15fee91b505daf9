"""The speed options applied once the model is placed: FP8 transformer weights, compile.

FP8 comes in two kinds. With torchao, the transformer blocks' matmuls run in FP8 (faster,
about half the memory); without it, or when torchao fails in any way, the weights are
stored in FP8 and computed in bf16 (memory only). torchao is tried on a small layer first,
a real FP8 matmul on the device, so that an incompatible torchao, kernel or GPU falls back
before the model is touched instead of failing every run later.
"""

from __future__ import annotations

import logging
from typing import Any

__all__ = ["apply_fp8", "compile_transformer", "quantize_fp8"]

logger = logging.getLogger(__name__)


def apply_fp8(torch: Any, transformer: Any, device: Any, *, offload: bool) -> str:
    """FP8 for `transformer` on `device` (a torch.device) where the GPU has it; returns the
    mode in effect: "torchao", "storage" or "unavailable: <why>"."""
    if device.type != "cuda":
        return _unavailable("FP8 needs a CUDA GPU")
    capability = torch.cuda.get_device_capability(device)
    if capability < (8, 9):
        return _unavailable(
            f"compute capability {capability[0]}.{capability[1]} has no FP8 "
            "(it needs 8.9 or later: Ada, Hopper, Blackwell)"
        )
    return quantize_fp8(torch, transformer, device, use_torchao=not offload)


def quantize_fp8(torch: Any, transformer: Any, device: Any, *, use_torchao: bool) -> str:
    """FP8 matmuls through torchao when it works on `device`, FP8 storage otherwise;
    `use_torchao` False (CPU offload: torchao's kernels need the weights on the GPU) goes
    straight to storage. Returns "torchao" or "storage"."""
    if use_torchao:
        try:
            config = _torchao_config(torch, device)
        except Exception as exc:
            logger.warning("FP8 matmuls (torchao) unavailable, storing FP8 weights: %s", exc)
        else:
            _quantize_blocks(torch, transformer, config)
            logger.info("LTX-2 transformer blocks quantized to FP8 (torchao)")
            return "torchao"
    # Storage-only FP8: half the transformer's memory, bf16 matmuls, no speed-up.
    transformer.enable_layerwise_casting(
        storage_dtype=torch.float8_e4m3fn, compute_dtype=transformer.dtype
    )
    logger.info("LTX-2 transformer weights stored in FP8, computed in %s", transformer.dtype)
    return "storage"


def compile_transformer(transformer: Any) -> None:
    # Regional compilation: one block is compiled and reused by all 48, so the first run
    # pays seconds rather than minutes; dynamic shapes spare a recompile for every size.
    transformer.compile_repeated_blocks(dynamic=True)


def _torchao_config(torch: Any, device: Any) -> Any:
    """torchao's row-wise FP8 config, once it has quantized and run a small bf16 layer."""
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, quantize_

    config = Float8DynamicActivationFloat8WeightConfig(granularity=PerRow())
    probe = torch.nn.Linear(256, 256, device=device, dtype=torch.bfloat16)
    quantize_(probe, config)
    with torch.no_grad():
        probe(torch.ones(16, 256, device=device, dtype=torch.bfloat16))
    return config


def _quantize_blocks(torch: Any, transformer: Any, config: Any) -> None:
    from torchao.quantization import quantize_

    # FP8 matmuls in the transformer blocks only: the small input and output projections
    # and the embeddings carry the most sensitive values and almost none of the time. Past
    # the probe, a failure leaves the model partly quantized: it is not caught, and set-up
    # fails naming it.
    quantize_(
        transformer,
        config,
        filter_fn=lambda module, name: (
            isinstance(module, torch.nn.Linear) and "transformer_blocks" in name
        ),
    )


def _unavailable(why: str) -> str:
    logger.warning("ltx2_fp8 ignored: %s", why)
    return f"unavailable: {why}"
