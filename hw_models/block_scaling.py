"""Block-scaled fp8 GEMMs on Hopper: the CUDA-core promotion of the fp32 partial sums.

Models: a GEMM whose operands carry one scale per ``block_k`` elements along K (DeepSeek-V3 / Qwen3
    fp8 checkpoints: 128 x 128 weight blocks and 1 x 128 activation groups) runs the fp8 MMA over
    one K block into a fresh accumulator, then the CUDA cores multiply each accumulator element by
    the product of its row's and column's scales and add it to the running fp32 sum: one FP32 FMA
    per output element per K block (DeepGEMM's ``final_accum += scale * accum``). The FMAs of one
    CTA tile (Bm x Bn per K block) run on the SM's FP32 pipes after the block's MMAs complete
    (the wgmma must be waited for before its registers are read), so each wave of CTAs on an SM
    adds ``ctas per SM x Bm x Bn x ceil(K / (split-K x block_k)) / FP32 FMAs per clock`` cycles to
    the MMA time. The roofline bound counts the same FMAs over the whole GPU, overlapped.
Ignores: the scale loads (4 bytes per 128 activations and per 16384 weights: under 3 % of the
    operand bytes), overlap of one warpgroup's promotion with another's MMAs (the DeepSeek-V3 report
    describes it for two concurrent warpgroups; with the MMA of a 128-wide K block taking ~4x the
    promotion, overlap would hide it completely, while the aic H200 tables show block-scaled GEMMs
    12-18 % slower than per-tensor fp8 ones at the largest shapes, which serialised promotion gives).
Sources: DeepSeek-AI, "DeepSeek-V3 Technical Report" (2024) section 3.3.2 (increasing accumulation
    precision: promotion to CUDA cores every 128 elements of K); deepseek-ai/DeepGEMM (2025);
    FP32 FMAs per SM per clock from the GPU preset (vector FLOP/s / 2 / SMs / clock).
"""

from __future__ import annotations

import math
from typing import Any


def promotion_s(plan: Any, k: int, block_k: int, params: Any) -> float:
    """Seconds the CUDA-core promotion adds to the GEMM ``plan`` (a ``gemm_tiles.GemmPlan``) of
    depth ``k`` with scale blocks of ``block_k`` along K; 0 when ``block_k`` is 0."""
    if not block_k:
        return 0.0
    bm, bn, _ = plan.tile
    k_blocks = math.ceil(k / max(1, plan.split_k) / block_k)
    cycles = plan.waves * plan.ctas_per_sm * bm * bn * k_blocks / params.vec_per_clk_sm
    return cycles / params.clock_hz


def promotion_fmas(m: int, n: int, k: int, block_k: int) -> float:
    """FP32 FMAs of the promotion of an ``m x n x k`` GEMM (the roofline's count: no tile padding)."""
    return float(m) * n * math.ceil(k / block_k) if block_k else 0.0
