"""What a pool's MoE layout decides about the engine's kernels.

``pool_timing`` applies an engine's parallelism rule for its block-scaled fp8 MoE kernel: vLLM runs
DeepGEMM's grouped GEMM for block-fp8 experts unless each expert is tensor-parallel over 8 or more GPUs
(vllm==0.12.0 vllm/model_executor/layers/quantization/fp8.py get_fp8_moe_backend: "DeepGEMM MoE is
disabled by default when TP size is >= 8", the MoE's tp_size being tensor x data parallel without expert
parallelism, 1 with it). The profile names the family (``timing.moe_kernel_fp8_block``) and the largest
expert tensor-parallel size it runs at (``timing.moe_kernel_fp8_block_max_tp``).
"""

from __future__ import annotations

from typing import Any


def expert_tp(pool: Any) -> int:
    """GPUs each expert is split over: the replica's GPUs over the expert-parallel ways."""
    return max(1, pool.tensor_parallel // max(1, pool.expert_parallel))


def pool_timing(config: Any, pool: Any) -> Any:
    """``config`` (a timing backend's config) for ``pool``: without the block-fp8 MoE family when the
    pool's experts are split over more GPUs than the family runs at."""
    limit = getattr(config, "moe_kernel_fp8_block_max_tp", 0)
    if limit and getattr(config, "moe_kernel_fp8_block", "") and expert_tp(pool) > limit:
        return config.model_copy(update={"moe_kernel_fp8_block": ""})
    return config
