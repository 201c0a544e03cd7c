"""vAttention kernel study: attention over contiguous virtual KV (FlashAttention-2) vs paged KV kernels.

Models: one layer's attention kernel on one GPU, mechanistically (Little's law and waves).
    Decode, both kernels stream K then V of each (sequence, head) in tiles; a CTA's lanes (warps
    that stream independently) each run a serial chain of tile loads, one load costing the
    dependent latency before it can issue plus the HBM latency plus the lane's compute, so the
    latency-bound time is waves x 2 x tiles per lane x that iteration; the kernel takes the
    largest of that, the unique K/V bytes over achievable HBM bandwidth, and the bytes the CTAs
    request over the L2 bandwidth (``_decode_kernel_s``).
    ``paged`` (vLLM PagedAttention v1/v2): one CTA per (sequence, *query* head) -- with GQA the
    heads of a group each request the shared K/V (HBM reads it once, L2 serves the repeats); 4
    warps, each streams one 16-token block per iteration (block x head_dim x 2 B per head), and
    each block first needs its physical block number from the block table (a dependent load, at
    L2 latency); dot products on the CUDA cores; vLLM's own rule picks v2 (512-token partitions
    plus a reduce kernel) when the context exceeds 8192 or few CTAs would run, else v1 (no split).
    ``contiguous`` (FlashAttention-2 split-KV decode on vAttention's virtually contiguous KV):
    GQA-aware grid (the group's query heads are the M rows of one CTA), kBlockN-token K/V tiles
    fetched with cp.async double buffering (compute overlapped), FA2's num_splits heuristic, a
    combine kernel when split.
    Prefill (a chunk of queries at the end of a context, causal): FlashAttention-2 tiles; per SM
    the tile loop costs max(MMA+exp, (MMA+exp + exposed latency) / resident CTAs), K/V re-read
    per Q tile where they miss L2. The MMA part of a K/V tile (``mma_loop_cycles``): 4 warps split
    the Q rows, so every warp loads all of K and V from shared memory; each MMA's fragment loads
    cost the tile backend's fitted GEMM fragment cost over the warp tile's intensity, and the
    loop's shared-memory bytes (128 B/clk/SM) bound it from below. ``contiguous``: FA2 (128 x 64
    tiles for head_dim 128: 32 query rows per warp). ``paged_fa``: FA2 with a block table runs its
    split-KV kernel (kBlockM 64 x kBlockN 128: 16 rows per warp, so K/V fragments serve half as
    many rows -- 0.066 vs 0.039 shared-memory bytes per FLOP; twice the K/V re-reads; each K/V
    tile first resolves its page: a dependent table load before the cp.async can issue).
    ``flashinfer``: paged prefill with page indices prefetched (no exposed latency), FA2's tiles;
    its MMA efficiency relative to FA2 is an input (``flashinfer_rel_efficiency``).
    vAttention adds page mapping: pages per step = rows x 2 x layers / tokens per page, each at
    ``mapping.mapping_latency``; overlapped (background thread) only the excess over the step shows.
    A decode step end to end = the tile backend's dense ops (GEMMs, norms, LM head) + layers x
    (attention + launch) + mapping.
Ignores: vLLM's kernel launch differences across versions (FlashInfer decode), partial-block
    waste in the last block, variable lengths in a batch, L2 misses of the block table, quality
    (none: both compute the same attention).
Sources: Prabhu et al., "vAttention: Dynamic Memory Management for Serving LLMs without
    PagedAttention" (ASPLOS 2025): up to 1.97x decode throughput vs vLLM, prefill up to 3.92x /
    1.45x vs paged FlashAttention-2 / FlashInfer; Kwon et al., "PagedAttention" (SOSP 2023) and
    vLLM csrc/attention (v1/v2 rule, 128 threads, 512-token partitions); Dao, FlashAttention-2
    flash_api.cpp (num_splits_heuristic, paged KV forces the split kernel) and
    flash_fwd_launch_template.h (split kernel 64 x 128, 4 warps; hdim-128 forward on sm80 128 x 64).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from pydantic import Field

from hw_models.attention_kernels import fa2_tiles
from hw_models.gemm_tiles import SMEM_BYTES_PER_CLK
from policies.caching.vattention import VattentionConfig
from simulator.config.loader import resolve_component
from simulator.config.quantities import PositiveBytesPerS, StrictConfig
from simulator.core import registry as reg
from workloads.llm import dense_ops

Component = str | dict[str, Any]
YI_6B = {"preset": "Llama-2-7B", "name": "Yi-6B", "num_kv_heads": 4, "vocab_size": 64000}


class Config(StrictConfig):
    models: list[Component] = Field(default_factory=lambda: ["Llama-3-8B", dict(YI_6B)],
                                    description="model presets or {preset: ..., <overrides>}")
    gpu: Component = "A100-80GB"
    batches: list[int] = Field(default_factory=lambda: [1, 8, 32, 64])
    contexts: list[int] = Field(default_factory=lambda: [4096, 16384])
    prefill_contexts: list[int] = Field(default_factory=lambda: [4096, 16384, 65536])
    prefill_chunk: int = Field(default=0, ge=0, description="queries per prefill call (0: whole context)")
    block_size: int = Field(default=16, gt=0, description="vLLM KV block, tokens")
    paged_warps: int = Field(default=4, gt=0, description="warps per paged CTA, one block each per iteration")
    paged_ctas_per_sm: int = Field(default=8, gt=0, description="resident paged CTAs per SM (before shared memory)")
    partition_tokens: int = Field(default=512, gt=0, description="vLLM v2 partition")
    vllm_v2: bool = Field(default=True, description="false: always v1 (no split of long contexts)")
    table_latency_cycles: float | None = Field(default=None, ge=0, description="block-table load (None: L2 hit)")
    block_compute_cycles: float = Field(default=120.0, ge=0,
                                        description="per-warp work per block besides loads (dot products, shuffles)")
    flashinfer_rel_efficiency: float = Field(default=0.8, gt=0, le=1,
                                             description="FlashInfer prefill MMA efficiency / FA2's (input)")
    l2_bw: PositiveBytesPerS | None = Field(default=None, description="None: preset or 2.3 x HBM (estimate)")
    mapping: VattentionConfig = Field(default_factory=VattentionConfig)


@dataclass(frozen=True)
class Hw:
    sms: int
    clock: float
    hbm_bw: float
    l2_bw: float
    hbm_lat: float  # cycles
    l2_lat: float  # cycles
    smem: float
    l2_bytes: float
    flop_clk_sm: float  # tensor, per SM per clock
    mma_eff: float
    vec_flops: float
    sfu: float
    hopper: bool
    fixed_s: float
    launch_s: float
    frag_cost: float = 0.0  # fragment-load cost of an MMA relative to its work (the tile backend's GEMM fit)
    smem_bpc: float = 128.0  # shared-memory bytes per clock per SM


def resolve(model: Component, gpu: Component, l2_bw: float | None = None):
    """(model config, gpu config, Hw, tile backend)."""
    blk = (lambda c, k: {"kind": k, "preset": c} if isinstance(c, str) else {"kind": k, **c})
    m = resolve_component(blk(model, "transformer"), reg.MODELS, "study.model").config
    g = resolve_component(blk(gpu, "gpu"), reg.HARDWARE, "study.gpu").config
    t = resolve_component({"kind": "tile"}, reg.TIMING, "study.timing")
    tb = t.cls(t.config, g)
    c = t.config
    hop = g.architecture == "hopper"
    hw = Hw(sms=g.sm_count, clock=g.clock_hz, hbm_bw=g.memory_bw_bytes_per_s * c.hbm_efficiency,
            l2_bw=l2_bw or g.l2_bw_bytes_per_s or 2.3 * g.memory_bw_bytes_per_s,
            hbm_lat=g.hbm_latency_cycles, l2_lat=g.l2_latency_cycles, smem=g.smem_per_sm_bytes, l2_bytes=g.l2_bytes,
            flop_clk_sm=g.tensor_peak(m.dtype) / (g.sm_count * g.clock_hz),
            mma_eff=c.attention_mma_efficiency * (1.0 if hop else g.mma_sync_peak_fraction),
            vec_flops=g.vector_flops_per_s, sfu=g.sfu_ops_per_clk_per_sm, hopper=hop,
            fixed_s=c.kernel_fixed_s, launch_s=g.launch_overhead_s, frag_cost=c.frag_cost,
            smem_bpc=SMEM_BYTES_PER_CLK)
    return m, g, hw, tb


def dense_step_s(tb: Any, m: Any, rows: int) -> float:
    """Every non-attention kernel of a decode step of ``rows`` sequences (tile backend)."""
    return tb.ops_s(dense_ops(rows, rows, m))


def _decode_kernel_s(hw: Hw, *, ctas: int, ctas_per_sm: int, tiles_per_lane: int, dep_cycles: float,
                     compute_cycles: float, unique: float, requested: float, flops: float, flop_s: float) -> float:
    """Latency chain x waves vs HBM (unique bytes) vs L2 (requested bytes) vs compute."""
    waves = math.ceil(ctas / (hw.sms * ctas_per_sm))
    chain = waves * 2 * tiles_per_lane * (dep_cycles + hw.hbm_lat + compute_cycles) / hw.clock
    return hw.fixed_s + max(chain, unique / hw.hbm_bw, requested / hw.l2_bw, flops / flop_s)


def fa2_num_splits(bhm: int, slots: int, n_blocks: int, max_splits: int = 128) -> int:
    """FlashAttention-2's num_splits_heuristic (flash_api.cpp)."""
    if bhm >= 0.8 * slots:
        return 1
    top = min(max_splits, slots, n_blocks)
    elig = [s == 1 or math.ceil(n_blocks / s) != math.ceil(n_blocks / (s - 1)) for s in range(1, top + 1)]
    eff = [(w := bhm * s / slots) / math.ceil(w) if ok else 0.0 for s, ok in zip(range(1, top + 1), elig)]
    best = max(eff)
    return next(s for s, e, ok in zip(range(1, top + 1), eff, elig) if ok and e >= 0.85 * best)


def contiguous_decode_s(hw: Hw, m: Any, batch: int, ctx: int) -> dict:
    """FA2 split-KV decode over contiguous KV; seconds per layer incl. launches."""
    d, db, hkv, h = m.head_dim, m.dtype_bytes, m.num_kv_heads, m.num_heads
    bn = 256 if d <= 64 else 128 if d <= 128 else 64
    per_sm = max(1, int(hw.smem // ((64 + 2 * bn) * d * db)))
    n_blocks = math.ceil(ctx / bn)
    splits = fa2_num_splits(batch * hkv, hw.sms * per_sm, n_blocks)
    unique = batch * (2 * hkv * ctx + 2 * h) * d * db
    t = _decode_kernel_s(hw, ctas=batch * hkv * splits, ctas_per_sm=per_sm, tiles_per_lane=math.ceil(n_blocks / splits),
                         dep_cycles=0.0, compute_cycles=0.0, unique=unique, requested=unique,
                         flops=4.0 * batch * h * d * ctx, flop_s=hw.flop_clk_sm * hw.sms * hw.clock * hw.mma_eff)
    t += hw.launch_s
    if splits > 1:  # combine kernel: fp32 partial outputs + LSE
        t += hw.launch_s + hw.fixed_s + batch * h * splits * (d + 1) * 4.0 / hw.hbm_bw
    return {"s": t, "splits": splits, "ctas": batch * hkv * splits}


def paged_decode_s(hw: Hw, m: Any, batch: int, ctx: int, cfg: Config, block: int | None = None) -> dict:
    """vLLM PagedAttention decode (v1 or v2 by vLLM's rule); seconds per layer incl. launches."""
    d, db, hkv, h = m.head_dim, m.dtype_bytes, m.num_kv_heads, m.num_heads
    block = block or cfg.block_size
    parts = math.ceil(ctx / cfg.partition_tokens)
    v2 = cfg.vllm_v2 and (ctx > 8192 or (parts > 1 and batch * h <= 512))
    parts = parts if v2 else 1
    tokens_cta = math.ceil(ctx / parts)
    blocks_cta = math.ceil(tokens_cta / block)
    logits = blocks_cta * block * 4.0 + 2 * d * db  # fp32 logits + q in shared memory
    per_sm = max(1, min(cfg.paged_ctas_per_sm, int(hw.smem // logits)))
    table = hw.l2_lat if cfg.table_latency_cycles is None else cfg.table_latency_cycles
    unique = batch * (2 * hkv * ctx + 2 * h) * d * db
    requested = batch * (2 * h * ctx + 2 * h) * d * db
    t = _decode_kernel_s(hw, ctas=batch * h * parts, ctas_per_sm=per_sm,
                         tiles_per_lane=math.ceil(blocks_cta / cfg.paged_warps), dep_cycles=table,
                         compute_cycles=cfg.block_compute_cycles, unique=unique, requested=requested,
                         flops=4.0 * batch * h * d * ctx, flop_s=hw.vec_flops)
    t += hw.launch_s
    if v2:  # reduce kernel over partitions
        t += hw.launch_s + hw.fixed_s + batch * h * parts * (d + 2) * 4.0 / hw.hbm_bw
    return {"s": t, "v2": v2, "ctas": batch * h * parts}


def mma_loop_cycles(hw: Hw, d: int, db: float, br: int, bc: int, warps: int = 4, rel_eff: float = 1.0) -> dict:
    """One K/V tile of an FA2-style CTA: S = Q K^T and O += P V, the ``warps`` warps splitting the
    ``br`` query rows. Each MMA's fragment loads cost ``frag_cost`` relative to its work over the
    warp tile's intensity (wtm x wtn / (wtm + wtn)), normalised to a 64 x 64 warp tile -- the tile
    backend's GEMM rule (``hw_models.gemm_tiles``) -- and the shared-memory bytes of the loop (Q once,
    K and V by every warp; P stays in registers) bound it from below."""
    wm = br / warps
    frag = (lambda n: (1.0 + hw.frag_cost / (wm * n / (wm + n))) / (1.0 + hw.frag_cost / 32.0))
    mma = 2.0 * br * bc * d * (frag(bc) + frag(d)) / (hw.flop_clk_sm * hw.mma_eff * rel_eff)
    smem = (br + 2.0 * warps * bc) * d * db / hw.smem_bpc
    return {"mma": mma, "smem": smem, "loop": max(mma, smem), "exp": br * bc / hw.sfu}


def fa_prefill_s(hw: Hw, m: Any, ctx: int, chunk: int, br: int, bc: int, dep_cycles: float = 0.0,
                 rel_eff: float = 1.0, warps: int = 4) -> float:
    """FA2-style causal prefill of ``chunk`` queries ending a ``ctx``-token context (one layer, one sequence)."""
    d, db, h, hkv = m.head_dim, m.dtype_bytes, m.num_heads, m.num_kv_heads
    q_tiles = math.ceil(chunk / br)
    past = ctx - chunk
    tiles = sum(math.ceil(min(ctx, past + (i + 1) * br) / bc) for i in range(q_tiles))  # per head
    ctas = q_tiles * h
    per_sm = max(1, int(hw.smem // ((br + 2 * bc) * d * db)))
    resident = min(per_sm, math.ceil(ctas / hw.sms))
    lc = mma_loop_cycles(hw, d, db, br, bc, warps, rel_eff)
    comp = max(lc["loop"], lc["exp"]) if hw.hopper else lc["loop"] + lc["exp"]
    per_tile = max(comp, (comp + dep_cycles) / resident)
    compute_s = math.ceil(ctas / hw.sms) * (tiles * h / ctas) * per_tile / hw.clock
    kv = 2.0 * ctx * hkv * d * db
    in_flight = max(1.0, min(hkv, 2.0 * hw.sms / q_tiles))  # (KV head) groups whose Q tiles run together
    miss = max(0.0, 1.0 - 0.5 * hw.l2_bytes / (kv / hkv * in_flight))
    hbm = 2.0 * chunk * h * d * db + kv * (1.0 + (q_tiles - 1) * miss)
    return hw.launch_s + hw.fixed_s + max(compute_s, hbm / hw.hbm_bw) + hw.hbm_lat / hw.clock


def prefill_kernels_s(hw: Hw, m: Any, ctx: int, chunk: int, cfg: Config) -> dict:
    br, bc = fa2_tiles(m.head_dim)
    sk_bn = 256 if m.head_dim <= 64 else 128 if m.head_dim <= 128 else 64
    table = hw.l2_lat if cfg.table_latency_cycles is None else cfg.table_latency_cycles
    return {"contiguous": fa_prefill_s(hw, m, ctx, chunk, br, bc),
            "paged_fa": fa_prefill_s(hw, m, ctx, chunk, 64, sk_bn, dep_cycles=table),
            "flashinfer": fa_prefill_s(hw, m, ctx, chunk, br, bc, rel_eff=cfg.flashinfer_rel_efficiency)}


def mapping_s(m: Any, rows_tokens: float, cfg: Config, busy_s: float) -> float:
    """Exposed page-mapping time for ``rows_tokens`` new tokens (all layers) in a step of ``busy_s``."""
    per_token = m.num_kv_heads * m.head_dim * m.dtype_bytes  # one layer's K (or V) buffer
    tokens_per_page = max(1, int(cfg.mapping.page_size // per_token))
    t = rows_tokens * 2 * m.num_layers / tokens_per_page * cfg.mapping.mapping_latency
    return max(0.0, t - busy_s) if cfg.mapping.overlap else t


def run(cfg: Config) -> dict:
    out: dict = {}
    best_dec, best_step, best_pf, best_fi = 0.0, 0.0, 0.0, 0.0
    for model in cfg.models:
        m, g, hw, tb = resolve(model, cfg.gpu, cfg.l2_bw)
        for b in cfg.batches:
            dense = dense_step_s(tb, m, b)
            for c in cfg.contexts:
                pg, ct = paged_decode_s(hw, m, b, c, cfg), contiguous_decode_s(hw, m, b, c)
                busy = dense + m.num_layers * ct["s"]
                step_p = dense + m.num_layers * pg["s"]
                step_v = busy + mapping_s(m, b, cfg, busy)
                k = f"{m.name} b{b} ctx{c}"
                out[f"decode_attn_speedup {k}"] = pg["s"] / ct["s"]
                out[f"decode_step_speedup {k}"] = step_p / step_v
                best_dec, best_step = max(best_dec, pg["s"] / ct["s"]), max(best_step, step_p / step_v)
        for c in cfg.prefill_contexts:
            chunk = min(c, cfg.prefill_chunk or c)
            p = prefill_kernels_s(hw, m, c, chunk, cfg)
            vat = p["contiguous"] * m.num_layers
            vat += mapping_s(m, chunk, cfg, vat + dense_step_s(tb, m, chunk))
            k = f"{m.name} ctx{c}"
            out[f"prefill_vs_paged_fa {k}"] = p["paged_fa"] * m.num_layers / vat
            out[f"prefill_vs_flashinfer {k}"] = p["flashinfer"] * m.num_layers / vat
            best_pf = max(best_pf, out[f"prefill_vs_paged_fa {k}"])
            best_fi = max(best_fi, out[f"prefill_vs_flashinfer {k}"])
    return {"gpu": g.name, "max_decode_attn_speedup": best_dec, "max_decode_step_speedup": best_step,
            "max_prefill_vs_paged_fa": best_pf, "max_prefill_vs_flashinfer": best_fi,
            **prefill_tile_figures(hw, m), **out}


def prefill_tile_figures(hw: Hw, m: Any) -> dict:
    """Cycles of one K/V tile per query row in both FA2 kernels, and the ceiling of the paged/contiguous
    ratio if every shared-memory byte of the 64-row kernel ran in series with its MMAs (no fragment
    cost) while the 128-row kernel hid its own: what the operand traffic could explain at most."""
    d, db = m.head_dim, m.dtype_bytes
    br, bc = fa2_tiles(d)
    sk_bn = 256 if d <= 64 else 128 if d <= 128 else 64
    c, p = mma_loop_cycles(hw, d, db, br, bc), mma_loop_cycles(hw, d, db, 64, sk_bn)
    bare = dataclasses.replace(hw, frag_cost=0.0)
    c0, p0 = mma_loop_cycles(bare, d, db, br, bc), mma_loop_cycles(bare, d, db, 64, sk_bn)
    per_pair = (lambda x, r, n: (x["loop"] + x["exp"]) / (r * n))
    return {"prefill_tile_cycles_per_pair contiguous": per_pair(c, br, bc),
            "prefill_tile_cycles_per_pair paged_fa": per_pair(p, 64, sk_bn),
            "prefill_smem_bytes_per_flop contiguous": c["smem"] * hw.smem_bpc / (4.0 * br * bc * d),
            "prefill_smem_bytes_per_flop paged_fa": p["smem"] * hw.smem_bpc / (4.0 * 64 * sk_bn * d),
            "prefill_smem_serial_ceiling": (p0["mma"] + p0["smem"] + p0["exp"]) / (64 * sk_bn)
            / ((c0["loop"] + c0["exp"]) / (br * bc))}
