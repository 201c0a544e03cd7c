"""DeepGEMM's m-grouped contiguous fp8 GEMM for block-scaled experts, as vLLM runs it on Hopper.

The kernel is DeepGEMM's dense block-scaled GEMM main loop with each 128-row block reading its own
group's weights, so the tile backend times it as its dense block-fp8 GEMM model over the padded groups
(efficiency 1.0 relative to it; that model is checked on the DeepGEMM dense rows, SGLang 0.5.14 13.9 %
median, FIDELITY.md); no per-layer constant besides the kernels in the op list (not fitted: the aic MoE
tables hold no DeepGEMM rows). ``contiguous_align``: rows per expert block, vllm==0.12.0
vllm/model_executor/layers/fused_moe/deep_gemm_utils.py (deepgemm_moe_permute aligns each expert's rows to
get_mk_alignment_for_contiguous_layout(), with the Triton helper round_up_128 beside it).
``chunk_tokens``: the modular kernel runs DeepGemmExperts (supports_chunking True) over chunks of at most
that many tokens, each with its own workspace, vllm==0.12.0 vllm/model_executor/layers/fused_moe/
modular_kernel.py _chunk_info (envs.py VLLM_FUSED_MOE_CHUNK_SIZE default 16 * 1024).
"""

from __future__ import annotations

import dataclasses
from typing import Any

DEEPGEMM_MOE = {"efficiency": 1.0, "fixed_s": 0.0, "pair_cache": 0.0, "row_passes": 0.0, "contiguous_align": 128.0,
                "chunk_tokens": 16384.0}


def chunks(op: Any, chunk: int) -> list[Any]:
    """``op`` cut into the modular kernel's chunks of at most ``chunk`` of its ``q_tokens`` tokens, in order:
    each chunk's tokens, (token, expert) pairs and per-expert rows a share of the op's by its tokens
    (cumulative floors, so every group's rows and the pairs add up to the op's)."""
    tokens = getattr(op, "q_tokens", 0)
    if not chunk or tokens <= chunk:
        return [op]
    cuts = list(range(0, tokens, chunk)) + [tokens]
    out = []
    for a, b in zip(cuts, cuts[1:]):
        groups = tuple(g * b // tokens - g * a // tokens for g in op.groups)
        out.append(dataclasses.replace(op, q_tokens=b - a, groups=groups, m=sum(groups),
                                       pairs=op.pairs * b // tokens - op.pairs * a // tokens))
    return out


def contiguous(op: Any, align: int, hbm_bw: float, chunk: int = 0) -> tuple[Any, float]:
    """A grouped GEMM ``op`` in a contiguous layout of ``align`` rows (vLLM's ``DeepGemmExperts``): each
    expert's rows padded to the alignment, and the workspace sized without the per-expert counts on the
    host, M_sum = round_up(tokens x top_k + experts x (align - 1), align) rows (``compute_aligned_M``),
    whose blocks beyond the experts' own are zero-initialised expert ids: computed against expert 0's
    weights as one more group. Returns the op over the padded groups and the seconds of the activation
    and its per-group quantization over the padding rows at ``hbm_bw`` (moe_up only: read the up output,
    2 x width in 16 bits, write width in 16 bits, read it, write width in fp8). ``chunk`` > 0: the layer's
    tokens in chunks of at most that many (``chunks``), each chunk's workspace padded on its own; the
    returned op holds every chunk's groups."""
    parts = chunks(op, chunk)
    if len(parts) > 1:
        done = [contiguous(p, align, hbm_bw) for p in parts]
        groups = tuple(g for p, _ in done for g in p.groups)
        return dataclasses.replace(op, groups=groups, m=sum(groups)), sum(s for _, s in done)
    groups = tuple(-(-g // align) * align for g in op.groups if g)
    rows = sum(groups)
    experts = getattr(op, "experts", 0)
    total = -(-(op.pairs + experts * (align - 1)) // align) * align if experts else rows
    if total > rows:
        groups += (total - rows,)
    padding = sum(groups) - op.m
    pad_s = padding * op.n * 4.5 / hbm_bw if op.name == "moe_up" else 0.0
    return dataclasses.replace(op, groups=groups, m=sum(groups)), pad_s
