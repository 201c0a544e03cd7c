"""CUTLASS sm90 fp8 ``scaled_mm``: the kernel configuration the library dispatches by M, N and K, and its time.

Models: the per-tensor-scaled fp8 linear of vLLM (and SGLang, given the same list) runs CUTLASS 3.x
    ``cutlass_scaled_mm`` (fp8 x fp8 -> bf16, the scales applied in the epilogue), whose sm90 dispatch
    picks one fixed configuration per (M, N, K) bucket instead of searching tiles and split-K counts
    as cuBLASLt does:
    M <= 16: swap-AB (the kernel computes C^T = B^T A^T, so the weights' N runs along the tile's 64
    rows and the tokens along its 16 columns), 64x16x256, cluster 1x2 for N <= 1280 else 1x1;
    16 < M <= 64: swap-AB, 64x16x256 in 1x4 clusters for N <= 1280, else 64x64x256 without a cluster
    (the TMA warp-specialized schedule: one consumer warp group);
    64 < M <= 128: 64x128x128 in 2x1 clusters (ping-pong);
    M >= 8192 and K >= 6144: 256x128x128 in 2x1 clusters (cooperative);
    other M > 128: 128x128x128 in 2x1 clusters (ping-pong).
    One CTA per output tile runs the whole K (a persistent tile scheduler, no split-K, no stream-K),
    so a small grid with a long K runs on few SMs. Each configuration is timed by
    ``gemm_tiles.plan_tile`` (occupancy, waves over cluster slots, TMA multicast, HBM / L2 bounds)
    with the fp8 wgmma constants of the GPU; a swap-AB configuration is planned as the transposed
    problem (N x M x K, cluster given along N then M).
Ignores: the epilogue's scale multiply (inside the C write), stages chosen by CUTLASS's carve-out
    (here: as many (BM + BN) x BK fp8 stages as fit 192 KiB, the epilogue's share left over, one CTA
    per SM), the batch-invariant dispatch (off by default).
Sources: vllm==0.12.0 csrc/quantization/w8a8/cutlass/c3x/scaled_mm_sm90_fp8_dispatch.cuh
    (``cutlass_gemm_sm90_fp8_dispatch`` and the configs ``sm90_fp8_config_M16_N1280``, ``_M16_N8192``,
    ``_M64_N1280``, ``_M64_N8192``, ``_M128``, ``_M8192_K6144``, ``_default``: tile, cluster, kernel
    schedule, swap_ab); the same configurations and bucket bounds in vllm==0.16.0 and 0.18.0 (the file is
    unchanged) and vllm==0.24.0 (csrc/libtorch_stable/quantization/w8a8/cutlass/c3x/, the same configs
    under the stable-ABI tensor type, plus the batch-invariant variant); CUTLASS 3.x kernel schedules
    (``KernelTmaWarpSpecializedFP8FastAccum``: producer + one consumer warp group;
    ``...PingpongFP8FastAccum`` / ``...CooperativeFP8FastAccum``: producer + two).
"""

from __future__ import annotations

from hw_models.gemm_tiles import GemmParams, GemmPlan, plan_tile

# warps of a CTA per CUTLASS sm90 kernel schedule (warp groups of 4 warps)
WS, PINGPONG, COOPERATIVE = 8, 12, 12

# (name, (BM, BN, BK, stages, warps), (cluster along the kernel's M, along its N), swap_ab); BK in fp8 bytes.
# With swap_ab the kernel's M is the GEMM's N (weights) and its N the GEMM's M (tokens).
SM90_FP8_CONFIGS = {
    "M16_N1280": ((64, 16, 256, 9, WS), (1, 2), True),
    "M16_N8192": ((64, 16, 256, 9, WS), (1, 1), True),
    "M64_N1280": ((64, 16, 256, 9, WS), (1, 4), True),
    "M64_N8192": ((64, 64, 256, 6, WS), (1, 1), True),
    "M128": ((64, 128, 128, 8, PINGPONG), (2, 1), False),
    "M8192_K6144": ((256, 128, 128, 4, COOPERATIVE), (2, 1), False),
    "default": ((128, 128, 128, 6, PINGPONG), (2, 1), False),
}


def sm90_fp8_config_name(m: int, n: int, k: int) -> str:
    """The configuration ``cutlass_gemm_sm90_fp8_dispatch`` picks for an (m x k) @ (k x n) GEMM."""
    if m <= 16:
        return "M16_N1280" if n <= 1280 else "M16_N8192"
    if m <= 64:
        return "M64_N1280" if n <= 1280 else "M64_N8192"
    if m <= 128:
        return "M128"
    if m >= 8192 and k >= 6144:
        return "M8192_K6144"
    return "default"


def sm90_fp8_config(m: int, n: int, k: int) -> tuple[tuple, tuple[int, int], bool]:
    """(tile, cluster, swap_ab) the sm90 dispatch picks for ``m`` x ``n`` x ``k``."""
    return SM90_FP8_CONFIGS[sm90_fp8_config_name(m, n, k)]


def plan_scaled_mm(m: int, n: int, k: int, p: GemmParams, out_bytes: float = 2.0) -> GemmPlan:
    """The plan of CUTLASS's sm90 fp8 scaled_mm for C[m, n] = A[m, k] @ B[k, n] (fp8 operands); a
    swap-AB configuration's plan is of the transposed problem (its tile along N, then M)."""
    tile, cluster, swap = sm90_fp8_config(m, n, k)
    rows, cols = (n, m) if swap else (m, n)
    cand = None
    if p.sms_per_gpc is not None and cluster != (1, 1):
        cand = plan_tile(rows, cols, k, 1.0, p, tile, 1, 1.0, out_bytes, cluster=cluster)
    if cand is None:  # no GPC data (or the cluster does not fit): the same tile without a cluster
        cand = plan_tile(rows, cols, k, 1.0, p, tile, 1, 1.0, out_bytes)
    if cand is None:
        raise ValueError(f"the scaled_mm tile {tile[:3]} does not fit the GPU's shared memory / registers")
    return GemmPlan(*cand)


__all__ = ["SM90_FP8_CONFIGS", "plan_scaled_mm", "sm90_fp8_config", "sm90_fp8_config_name"]
