"""CUTLASS sm90 fp8 ``scaled_mm``: the kernel configuration the library dispatches by M, and its time.

Models: the per-tensor-scaled fp8 linear of vLLM and SGLang runs CUTLASS 3.x ``cutlass_scaled_mm``
    (fp8 x fp8 -> bf16 with the scales applied in the epilogue), whose sm90 dispatch picks one fixed
    configuration per M bucket instead of searching tiles and split-K counts as cuBLASLt does:
    M <= 64: 64x64x128 tiles in 1x8 clusters (TMA warp-specialized); 64 < M <= 128: 64x128x128 in
    2x1 clusters (ping-pong); M > 128: 128x128x128 in 2x1 clusters (ping-pong). One CTA per output
    tile runs the whole K (no split-K, no stream-K), so a small M x N grid with a long K runs on few
    SMs. Each configuration is timed by ``gemm_tiles.plan_tile`` (occupancy, waves over cluster slots,
    TMA multicast, HBM / L2 bounds) with the fp8 wgmma constants of the GPU.
Ignores: the swap-AB variants and the per-N refinements of later library versions, the epilogue's
    scale multiply (inside the C write), stages chosen by CUTLASS's carve-out (here: as many as fill
    the shared memory with one CTA per SM).
Sources: vLLM ``csrc/quantization/cutlass_w8a8/c3x/scaled_mm_sm90_fp8_dispatch.cuh`` (configs
    ``sm90_fp8_config_M64`` / ``_M128`` / ``_default``; SGLang's ``sgl-kernel`` fp8 scaled_mm carries
    the same sm90 configurations) as recalled, not checked line by line against the 0.24 / sgl-kernel
    sources; CUTLASS 3.x kernel schedules (``KernelTmaWarpSpecialized``, ``...PingpongFP8FastAccum``).
"""

from __future__ import annotations

from hw_models.gemm_tiles import GemmParams, GemmPlan, plan_tile

# (largest M of the bucket, (BM, BN, BK, stages, warps), (cluster M, cluster N)); BK 128 = 128 fp8 bytes.
# Stages: as many (BM + BN) x BK fp8 stages as fit 228 KiB with the epilogue's share, one CTA per SM;
# warps: producer + one consumer warp group (warp-specialized) or + two (ping-pong).
SM90_FP8_DISPATCH = (
    (64, (64, 64, 128, 12, 8), (1, 8)),
    (128, (64, 128, 128, 8, 12), (2, 1)),
    (1 << 62, (128, 128, 128, 6, 12), (2, 1)),
)


def sm90_fp8_config(m: int) -> tuple[tuple, tuple[int, int]]:
    """(tile, cluster) the sm90 dispatch picks for ``m`` rows."""
    for top, tile, cluster in SM90_FP8_DISPATCH:
        if m <= top:
            return tile, cluster
    raise AssertionError("unreachable: the last bucket is unbounded")


def plan_scaled_mm(m: int, n: int, k: int, p: GemmParams, out_bytes: float = 2.0) -> GemmPlan:
    """The plan of CUTLASS's sm90 fp8 scaled_mm for C[m, n] = A[m, k] @ B[k, n] (fp8 operands)."""
    tile, cluster = sm90_fp8_config(m)
    cand = None
    if p.sms_per_gpc is not None and cluster != (1, 1):
        cand = plan_tile(m, n, k, 1.0, p, tile, 1, 1.0, out_bytes, cluster=cluster)
    if cand is None:  # no GPC data (or the cluster does not fit): the same tile without a cluster
        cand = plan_tile(m, n, k, 1.0, p, tile, 1, 1.0, out_bytes)
    if cand is None:
        raise ValueError(f"the scaled_mm tile {tile[:3]} does not fit the GPU's shared memory / registers")
    return GemmPlan(*cand)


__all__ = ["SM90_FP8_DISPATCH", "plan_scaled_mm", "sm90_fp8_config"]
