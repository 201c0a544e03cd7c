"""The Triton fused-MoE kernel configuration a framework runs for a MoE layer, and its token padding.

Models: vLLM's and SGLang's ``fused_moe`` launch one Triton kernel per grouped GEMM with a
    configuration (BLOCK_SIZE_M / N / K, GROUP_SIZE_M, num_warps, num_stages) chosen per call by
    ``try_get_optimal_moe_config(w1.shape, w2.shape, top_k, dtype, M)``: the tuned file for (E = the
    experts the GPU holds, N = the expert width per GPU, dtype[, block shape]) on this device, at the
    batch size of the file closest to M = the layer's tokens; without a file the framework's
    ``get_default_config``. The H200 files of each framework version are shipped in
    ``moe_configs_h200.json`` (extracted with ``python -m simulator.validation.aic_moe_configs``; the
    lookup order over SGLang's per-Triton-version directories is resolved there). ``moe_align_block_size``
    then pads each expert's rows to a multiple of BLOCK_SIZE_M (``padded_rows``).
Sources (read in the wheels; the functions below reproduce them):
    sglang==0.5.10 sglang/srt/layers/moe/fused_moe_triton/fused_moe_triton_config.py
    (get_moe_configs, get_default_config, try_get_optimal_moe_config) and moe_align_block_size.py (the same
    file in sglang==0.5.6.post2 / 0.5.8.post1 / 0.5.9, whose own tuned files are shipped for the serving rows);
    sglang==0.5.14 sglang/srt/layers/moe/moe_runner/triton_utils/fused_moe_triton_config.py (the same
    defaults on an H200: its low-shared-memory fp8 branch needs < 128 KiB per block; a down-projection
    file's BLOCK_SIZE_M is overridden by the up one's); vllm==0.19.0 / vllm==0.24.0
    vllm/model_executor/layers/fused_moe/fused_moe.py (get_moe_configs, get_default_config: identical in
    both); configurations without num_warps / num_stages run at Triton's defaults 4 / 3 (triton==3.5.1
    triton/backends/nvidia/compiler.py CUDAOptions).
Ignores: SGLang's TMA down-projection variant (``USE_TMA`` in a down file: its extra padding rows),
    user override directories, other devices' tuned files (a GPU other than the H200 runs the default
    configuration, as the frameworks do for a device without a file).
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path

DATA = Path(__file__).with_name("moe_configs_h200.json")
# the configuration set each Triton kernel family runs when none is named (the newest version measured)
FAMILY_SETS = {"triton": "vllm==0.24.0", "triton_sglang": "sglang==0.5.14"}
TRITON_DEFAULT_WARPS, TRITON_DEFAULT_STAGES = 4, 3  # triton==3.5.1 CUDAOptions


@functools.lru_cache(maxsize=1)
def _sets() -> dict:
    return json.loads(DATA.read_text())["sets"]


def config_sets() -> tuple[str, ...]:
    return tuple(sorted(_sets()))


def _key(experts: int, n: int, dtype: str, block: int, down: bool) -> str:
    k = f"{experts},{n},{dtype}" + (f",{block},{block}" if block else "")
    return k + (",down" if down else "")


def tuned_file(config_set: str, experts: int, n: int, dtype: str, block: int = 0, down: bool = False) -> dict | None:
    """{M: configuration} of the H200 file ``config_set`` loads for (E, N, dtype), or None."""
    sets = _sets()
    if config_set not in sets:
        raise ValueError(f"unknown fused-MoE configuration set {config_set!r}; known: {', '.join(sorted(sets))}")
    hit = sets[config_set]["files"].get(_key(experts, n, dtype, block, down))
    return None if hit is None else hit["configs"]


def default_config(framework: str, m: int, experts: int, dtype: str, block: int = 0) -> dict:
    """The framework's ``get_default_config(M, E, ...)`` (``framework`` "sglang" or "vllm"; ``dtype``
    "bf16" or "fp8_w8a8"; ``block``: block-scaled fp8's block size, 0 per-tensor)."""
    if framework == "sglang":
        if dtype == "fp8_w8a8":
            if block:
                return dict(BLOCK_SIZE_M=64, BLOCK_SIZE_N=block, BLOCK_SIZE_K=block, GROUP_SIZE_M=32, num_warps=4,
                            num_stages=3)
            if m <= experts:
                return dict(BLOCK_SIZE_M=64, BLOCK_SIZE_N=128, BLOCK_SIZE_K=128, GROUP_SIZE_M=1, num_warps=4,
                            num_stages=4)
            return dict(BLOCK_SIZE_M=128, BLOCK_SIZE_N=256, BLOCK_SIZE_K=128, GROUP_SIZE_M=32, num_warps=8,
                        num_stages=4)
        if m <= experts:
            return dict(BLOCK_SIZE_M=16, BLOCK_SIZE_N=32, BLOCK_SIZE_K=64, GROUP_SIZE_M=1)
        return dict(BLOCK_SIZE_M=64, BLOCK_SIZE_N=64, BLOCK_SIZE_K=32, GROUP_SIZE_M=8)
    if dtype == "fp8_w8a8" and block:
        return dict(BLOCK_SIZE_M=16 if m <= 64 else 64, BLOCK_SIZE_N=block, BLOCK_SIZE_K=block,
                    GROUP_SIZE_M=1 if m <= 16 else 32, num_warps=4, num_stages=3)
    block_m = 16 if m <= 32 else 32 if m <= 96 else 64 if m <= 512 else 128
    return dict(BLOCK_SIZE_M=block_m, BLOCK_SIZE_N=64 if m <= 64 else 128,
                BLOCK_SIZE_K=128 if dtype == "fp8_w8a8" or m <= 64 else 64,
                GROUP_SIZE_M=16 if m // max(experts, 1) > 128 else 1, num_warps=4 if m <= 128 else 8,
                num_stages=4 if m <= 32 else 3)


def _closest(table: dict, m: int) -> dict:
    # configs[min(configs.keys(), key=lambda x: abs(x - M))]: the first closest in the file's order
    # (ascending batch sizes in every shipped file, so ties go to the smaller one)
    return table[min(sorted(table, key=int), key=lambda x: abs(int(x) - m))]


@functools.lru_cache(maxsize=16384)
def triton_config(config_set: str, m: int, experts: int, n: int, dtype: str, block: int = 0, down: bool = False,
                  tuned: bool = True) -> tuple[int, int, int, int, int, int]:
    """(BLOCK_SIZE_M, BLOCK_SIZE_N, BLOCK_SIZE_K, GROUP_SIZE_M, num_warps, num_stages) of the grouped GEMM
    ``config_set`` (e.g. "sglang==0.5.10") launches for ``m`` tokens on a GPU holding ``experts`` experts
    of width ``n`` (the file's E and N); ``down``: the down projection (SGLang's ``_down`` file when one
    exists, with the up configuration's BLOCK_SIZE_M); ``tuned`` False: no tuned file (another device)."""
    framework = config_set.split("==", 1)[0]
    table = tuned_file(config_set, experts, n, dtype, block) if tuned else None
    cfg = dict(_closest(table, m)) if table else default_config(framework, m, experts, dtype, block)
    if down and tuned and framework == "sglang":
        dt = tuned_file(config_set, experts, n, dtype, block, down=True)
        if dt:
            cfg = {**_closest(dt, m), "BLOCK_SIZE_M": cfg["BLOCK_SIZE_M"]}
    return (int(cfg["BLOCK_SIZE_M"]), int(cfg["BLOCK_SIZE_N"]), int(cfg["BLOCK_SIZE_K"]),
            int(cfg.get("GROUP_SIZE_M", 1)), int(cfg.get("num_warps", TRITON_DEFAULT_WARPS)),
            int(cfg.get("num_stages", TRITON_DEFAULT_STAGES)))


def has_h200_files(device_name: str) -> bool:
    """Whether a device loads the shipped NVIDIA_H200 files: the H200 SXM (the frameworks key a file by
    ``torch.cuda.get_device_name()``; a GH200 or an H200 NVL has another name and runs the default)."""
    return re.search(r"(?<![A-Za-z0-9])H200(?![ _-]?NVL)", device_name) is not None


def padded_rows(groups: tuple[int, ...], block_m: int) -> tuple[int, ...]:
    """Each expert's rows after ``moe_align_block_size``: padded up to a multiple of BLOCK_SIZE_M (an
    expert without tokens gets no block)."""
    return tuple(-(-g // block_m) * block_m for g in groups)


__all__ = ["FAMILY_SETS", "config_sets", "default_config", "has_h200_files", "padded_rows", "triton_config",
           "tuned_file"]
