"""Grouped GEMMs (a fused-MoE kernel's experts in one launch) on the tile model of ``hw_models.gemm_tiles``:
``plan_grouped`` picks the library tile for the whole group, ``plan_grouped_config`` runs a given Triton tile
configuration (the frameworks' tuned MoE config files, ``hw_models.moe_configs``)."""

from __future__ import annotations

import functools

from hw_models.gemm_tiles import (
    MAX_CTAS_PER_SM,
    MAX_THREADS_PER_SM,
    REG_OVERHEAD_PER_THREAD,
    TILES_MIXED,
    TILES_SM80,
    TILES_SM90,
    GemmParams,
    GemmPlan,
    _tile_table,
)


def plan_grouped(groups: tuple[int, ...], n: int, k: int, elem_bytes: float, p: GemmParams, w_bytes: float = 0.0,
                 out_bytes: float = 0.0, deq_ops: float = 0.0, deq_overlap: bool = True,
                 extra_bytes: float = 0.0) -> GemmPlan:
    """A grouped GEMM (the experts of a MoE layer in one kernel: Triton fused_moe, CUTLASS grouped
    GEMM): group g multiplies its ``groups[g]`` rows by its own [k, n] weight. The grid is every
    group's (rows padded to the tile's BM) x (n / BN) tiles, spread over the SMs as one GEMM's; each
    group's weight is read once, its rows once per N sweep unless they stay in L2. No split-K and
    no clusters (the libraries' grouped kernels use neither); the library picks the tile as for a
    GEMM (smallest modelled time). ``extra_bytes``: HBM traffic of the kernel besides its operands
    (rows it writes for tokens routed to other GPUs' experts)."""
    tiles = TILES_MIXED if deq_ops else TILES_SM90 if p.hopper else TILES_SM80
    wb, cb = w_bytes or elem_bytes, out_bytes or elem_bytes
    m = sum(groups)
    a_bytes, b_bytes, c_bytes = m * k * elem_bytes, len(groups) * k * n * wb, m * n * cb + extra_bytes
    a_big = sum(g for g in groups if g * k * elem_bytes > 0.5 * p.l2_bytes) * k * elem_bytes
    best: tuple | None = None
    for tile, occ, step, in_flight in _tile_table(tiles, elem_bytes, wb, deq_ops, deq_overlap, p):
        bm, bn, bk, stages, _ = tile
        tn = -(-n // bn)
        ctas = sum(-(-g // bm) for g in groups) * tn
        if not ctas:
            continue
        slots = p.sms * occ
        waves = -(-ctas // slots)
        per_sm = -(-ctas // p.sms)
        cta_cyc = -(-k // bk) * step
        compute_s = per_sm * cta_cyc / p.clock_hz
        # each group's rows stay in L2 across its N tiles when they fit (the grouped schedulers walk a
        # group's tiles together); a larger group is re-read once per N sweep as in a GEMM
        a_reads = max(1, min(tn, waves))
        hbm = (a_bytes + a_big * (a_reads - 1)) + b_bytes + c_bytes
        memory_s = hbm / min(p.hbm_bw, min(ctas, slots) * in_flight / p.hbm_latency_s)
        t = max(compute_s, memory_s) + waves * p.cta_overhead_cycles / p.clock_hz + p.kernel_fixed_s
        if best is None or t < best[0]:
            best = (t, (bm, bn, bk), 1, ctas, occ, waves, compute_s, memory_s, hbm, cta_cyc, stages)
    if best is None:
        raise ValueError(f"no grouped GEMM tile fits for groups {groups[:4]}... x {n} x {k}")
    return GemmPlan(*best)


@functools.lru_cache(maxsize=4096)
def plan_grouped_config(groups: tuple[int, ...], n: int, k: int, elem_bytes: float, p: GemmParams,
                        config: tuple[int, int, int, int, int, int], w_bytes: float = 0.0, out_bytes: float = 0.0,
                        extra_bytes: float = 0.0) -> GemmPlan:
    """A Triton fused-MoE grouped GEMM at the configuration the framework launches (``config``:
    BLOCK_SIZE_M, N, K, GROUP_SIZE_M, num_warps, num_stages; ``hw_models.moe_configs``): each group's rows
    padded to BLOCK_SIZE_M (moe_align_block_size), one CTA per (padded M block, N block), every CTA
    running the whole K loop. As ``plan_grouped`` otherwise, with the tile the config names instead of the
    fastest, occupancy from its own stages and warps (no producer warp group: Triton's fused_moe kernel
    is not warp-specialised), and the operand tiles every CTA streams out of L2 ((BM + BN) x K bytes) over
    ``p.l2_bw``: a small tile moves more bytes per FLOP (a 64 x 64 tile needs 1/32 B per FLOP)."""
    bm, bn, bk, _, warps, stages = config
    wb, cb = w_bytes or elem_bytes, out_bytes or elem_bytes
    threads = 32 * warps
    smem = stages * (bm * elem_bytes + bn * wb) * bk
    regs = threads * 4 * min(255.0, bm * bn / threads + REG_OVERHEAD_PER_THREAD)
    occ = max(1, min(int(p.smem_per_sm // smem), int(p.regs_per_sm // regs), MAX_THREADS_PER_SM // threads,
                     MAX_CTAS_PER_SM))
    step = bm * bn * bk * 2.0 / (p.flop_per_clk_sm * p.mma_eff)
    in_flight = (stages - 1) * (bm * elem_bytes + bn * wb) * bk
    m = sum(groups)
    tn = -(-n // bn)
    ctas = sum(-(-g // bm) for g in groups) * tn
    if not ctas:
        raise ValueError(f"grouped GEMM without rows: groups {groups[:4]}... x {n} x {k}")
    slots = p.sms * occ
    waves = -(-ctas // slots)
    cta_cyc = -(-k // bk) * step
    compute_s = -(-ctas // p.sms) * cta_cyc / p.clock_hz
    a_big = sum(g for g in groups if g * k * elem_bytes > 0.5 * p.l2_bytes) * k * elem_bytes
    hbm = m * k * elem_bytes + a_big * (max(1, min(tn, waves)) - 1) + len(groups) * k * n * wb + m * n * cb \
        + extra_bytes
    memory_s = hbm / min(p.hbm_bw, min(ctas, slots) * in_flight / p.hbm_latency_s)
    l2 = ctas * (bm * elem_bytes + bn * wb) * k
    if p.l2_bw:
        memory_s = max(memory_s, l2 / p.l2_bw)
    t = max(compute_s, memory_s) + waves * p.cta_overhead_cycles / p.clock_hz + p.kernel_fixed_s
    return GemmPlan(t, (bm, bn, bk), 1, ctas, occ, waves, compute_s, memory_s, hbm, cta_cyc, stages, (1, 1, 1), l2)
