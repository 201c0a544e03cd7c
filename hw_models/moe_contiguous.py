"""DeepGEMM's m-grouped contiguous fp8 GEMM for block-scaled experts, as vLLM runs it on Hopper.

The kernel is DeepGEMM's dense block-scaled GEMM main loop with each 128-row block reading its own
group's weights, so the tile backend times it as its dense block-fp8 GEMM model over the padded groups
(efficiency 1.0 relative to it; that model is checked on the DeepGEMM dense rows, SGLang 0.5.14 13.9 %
median, FIDELITY.md); no per-layer constant besides the kernels in the op list (not fitted: the aic MoE
tables hold no DeepGEMM rows). ``contiguous_align``: rows per expert block, vllm==0.12.0
vllm/model_executor/layers/fused_moe/deep_gemm_utils.py (deepgemm_moe_permute aligns each expert's rows to
get_mk_alignment_for_contiguous_layout(), with the Triton helper round_up_128 beside it).
"""

from __future__ import annotations

import dataclasses
from typing import Any

DEEPGEMM_MOE = {"efficiency": 1.0, "fixed_s": 0.0, "pair_cache": 0.0, "row_passes": 0.0, "contiguous_align": 128.0}


def contiguous(op: Any, align: int, hbm_bw: float) -> tuple[Any, float]:
    """A grouped GEMM ``op`` in a contiguous layout of ``align`` rows (vLLM's ``DeepGemmExperts``): each
    expert's rows padded to the alignment, and the workspace sized without the per-expert counts on the
    host, M_sum = round_up(tokens x top_k + experts x (align - 1), align) rows (``compute_aligned_M``),
    whose blocks beyond the experts' own are zero-initialised expert ids: computed against expert 0's
    weights as one more group. Returns the op over the padded groups and the seconds of the activation
    and its per-group quantization over the padding rows at ``hbm_bw`` (moe_up only: read the up output,
    2 x width in 16 bits, write width in 16 bits, read it, write width in fp8)."""
    groups = tuple(-(-g // align) * align for g in op.groups if g)
    rows = sum(groups)
    experts = getattr(op, "experts", 0)
    total = -(-(op.pairs + experts * (align - 1)) // align) * align if experts else rows
    if total > rows:
        groups += (total - rows,)
    padding = sum(groups) - op.m
    pad_s = padding * op.n * 4.5 / hbm_bw if op.name == "moe_up" else 0.0
    return dataclasses.replace(op, groups=groups, m=sum(groups)), pad_s
