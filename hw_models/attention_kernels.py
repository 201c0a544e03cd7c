"""Attention kernels: FlashAttention-2 prefill and paged / split-KV / stream-K decode.

Models: prefill as FlashAttention-2 — one CTA per (sequence, head, Q tile of Br rows), K/V
    streamed in Bc-column blocks through shared memory; causal masking skips blocks above the
    diagonal and computes the diagonal blocks in full (half of each wasted); per (query, key)
    pair per head the CTA spends 4 x head_dim FLOPs on the tensor cores and one exp on the SFUs
    (FA2 on Ampere does not overlap them; FA3-style ping-pong on Hopper hides a fitted share of the
    shorter of the two behind the longer: the H200 tables put the cycles per pair on a line in the head
    dim whose intercept is about the exp, not on max(MMA, exp)); CTAs over SMs with wave quantisation,
    or, for a persistent kernel (FA3's tile scheduler), the causal work shared evenly over the SMs but
    never less than the longest tile (the last Q tile reads every key); GQA shares a K/V head between
    heads/kv_heads query heads. HBM traffic: Q
    read and O written once, K/V read once per sequence while they fit in L2, otherwise re-read
    by each Q tile (the FlashAttention I/O analysis with L2 as the SRAM). Decode (one query token
    per sequence) is memory-bound on the K/V reads: ``paged`` launches seqs x kv_heads CTAs
    (vLLM PagedAttention, GQA-aware), so a small batch leaves SMs idle and bandwidth is capped by
    the bytes the busy SMs keep in flight over the HBM latency; ``split_kv`` (FlashDecoding)
    splits each sequence's context so the grid fills the GPU, plus a second kernel to reduce the
    partial softmaxes; ``lean`` (Lean Attention, stream-K) gives every SM an equal share of the
    context and fixes up partials in the same kernel. A family whose decode pipelines its K/V tiles
    through TMA (FlashAttention-3) keeps its pipeline's bytes in flight per CTA and streams at its own
    share of HBM bandwidth (``decode_hbm_bw``; else the bandwidth of the library's streaming kernels and
    the loads of a paged kernel in flight). A quantized KV cache is read at its packed
    width (KIVI's recent-token window at full precision) and dequantized on the CUDA cores,
    overlapped with the loads (decode) or the MMAs (prefill reads earlier chunks quantized).
    Separate query/key and value head widths (``v_head_dim`` on the op; 0: the same) and
    multi-head latent attention (DeepSeek MLA, ``latent`` on the op): K and V are one cached
    vector per token (the 512-wide latent and the 64-wide rotary key; V is the latent's first
    ``v_head_dim`` elements), read once and shared by every query head, as FlashMLA and the
    frameworks' absorbed-MLA kernels run it; the query heads of a latent op are the MMA's M
    dimension and are padded to the kernel's head tile (64 rows on Hopper wgmma kernels, FlashMLA;
    16 on mma.sync kernels).
Ignores: per-sequence length imbalance within a batch (all sequences get the mean length),
    paged-block indirection cost, dropout, ALiBi/sliding windows.
Sources: Dao et al., "FlashAttention" (NeurIPS 2022) I/O analysis; Dao, "FlashAttention-2"
    (2023), Br/Bc tile sizes and work partitioning; Kwon et al., "PagedAttention" (SOSP 2023);
    Dao et al., "Flash-Decoding for long-context inference" (2023 blog); the preparation cost, the
    per-CTA cycles and the GQA group limit fitted on the aic H200/A100 tables (FIDELITY.md); Sanovar et al., "Lean
    Attention" (2024); Shah et al., "FlashAttention-3" (2024) for the Hopper softmax/GEMM overlap;
    DeepSeek-AI, "DeepSeek-V2" (2024) section 2.1 and deepseek-ai/FlashMLA (2025; 64-row query-head
    tiles) for the latent attention.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

DECODE_CTA_IN_FLIGHT = 128 * 16 * 4  # bytes: 128 threads x 16-B vector loads x 4 unrolled (vLLM paged_attention_v1)
DECODE_CTAS_PER_SM = 8  # resident decode CTAs per SM (128 threads, small shared memory)
# FlashAttention-3 keeps a 2-stage circular buffer of K and V tiles loaded by TMA (Shah et al. 2024, section
# 3.1; 128-key tiles at head dim 128, 16-bit): 2 x 2 x 128 x 128 x 2 bytes in flight per CTA. On an H200 (132 SMs,
# 0.26 us HBM latency) that is 66 TB/s of loads in flight: never the bound, the decode kernel's HBM share is.
FA3_CTA_IN_FLIGHT = 2 * 2 * 128 * 128 * 2


@dataclass(frozen=True, slots=True)
class AttnParams:
    sms: int
    clock_hz: float
    flop_per_clk_sm: float
    mma_eff: float
    sfu_per_clk_sm: float
    hbm_bw: float
    hbm_latency_s: float
    smem_per_sm: float
    l2_bytes: float
    in_flight_per_sm: float
    kernel_fixed_s: float
    overlap_softmax: bool = False
    vec_per_clk_sm: float = 64.0  # FP32 FMA instructions per clock per SM (KV dequantization)
    cta_cycles: float = 0.0  # prefill: SM cycles per Q-tile CTA besides its MMAs (prologue loads, O write)
    prefill_fixed_s: float = 0.0  # the framework's prefill attention op around the kernel (preparation kernels)
    decode_fixed_s: float = 0.0  # the same for decode
    decode_cta_cycles: float = 0.0  # decode: SM cycles per (sequence, KV head) CTA besides its loads (setup, Q, O)
    decode_max_group: int = 0  # decode: most query heads one K/V read serves (0: any); above it, one read per head
    latent_hbm_bw: float = 0.0  # decode over an MLA latent: the HBM bandwidth its kernel streams at (0: hbm_bw)
    decode_hbm_bw: float = 0.0  # decode: the HBM bandwidth the family's decode kernel streams K/V at (0: hbm_bw)
    decode_cta_in_flight: float = 0.0  # decode: bytes one CTA keeps in flight (0: DECODE_CTA_IN_FLIGHT)
    # prefill with overlap_softmax: the share of the shorter of (MMA, exp) per (query, key) pair hidden behind
    # the longer (1: the ideal ping-pong, max of the two; 0: serial, their sum)
    softmax_overlap: float = 1.0
    # prefill: a persistent kernel (FA3 on Hopper) walks its (Q tile, head) tiles from a queue longest first, so the
    # SMs share the causal work evenly (at least the longest tile) instead of running ceil(CTAs / SMs) even waves
    persistent: bool = False


# Share of HBM bandwidth the MLA decode kernel streams the latent at: FlashMLA's README gives "up to
# 3000 GB/s in memory-bound configuration" on an H800 SXM5 (3.35 TB/s HBM3): 3000 / 3350.
FLASHMLA_HBM_FRACTION = 3000.0 / 3350.0


def head_dims(op: Any) -> tuple[int, int, int]:
    """(query/key width, value width, K+V elements cached per token per KV head) of ``op``: plain
    attention has K and V of ``head_dim`` each; an op with ``v_head_dim`` has V narrower or wider;
    a ``latent`` op (MLA) caches one ``head_dim``-wide vector whose first ``v_head_dim`` elements
    are V."""
    dk = op.head_dim
    dv = getattr(op, "v_head_dim", 0) or dk
    return dk, dv, (dk if getattr(op, "latent", False) else dk + dv)


def mma_heads(op: Any, p: AttnParams) -> int:
    """Query heads the MMAs compute: a latent (MLA) op's heads are the M dimension of its tiles,
    padded to 64 rows on wgmma kernels (FlashMLA) and 16 on mma.sync ones; others as given."""
    if not getattr(op, "latent", False):
        return op.heads
    tile = 64 if p.overlap_softmax else 16
    return -(-op.heads // tile) * tile


def mla_tiles(head_dim: int, p: AttnParams) -> tuple[int, int]:
    """(Br, Bc) of an MLA prefill kernel: on Hopper-class GPUs FlashAttention-3's choice for a
    192-wide Q/K head (hopper/tile_size.h: 128 x 96 causal) and FlashMLA's 64 x 64 for the
    576-wide latent; FlashAttention-2's otherwise."""
    if not p.overlap_softmax:
        return fa2_tiles(head_dim)
    return (128, 96) if head_dim <= 192 else (64, 64)


def fa2_tiles(head_dim: int) -> tuple[int, int]:
    """(Br, Bc) of the FlashAttention-2 forward kernel (flash_fwd_launch_template.h choices)."""
    return (128, 128) if head_dim <= 64 else (128, 64) if head_dim <= 128 else (64, 64)


def prefill_s(op: Any, p: AttnParams) -> float:
    """FlashAttention-2 forward over ``op`` (one layer); 0 for an empty op."""
    if op.q_tokens <= 0:
        return 0.0
    hd, dv, kvw = head_dims(op)
    b = op.dtype_bytes
    mla = bool(getattr(op, "v_head_dim", 0))
    br, bc = mla_tiles(hd, p) if mla else fa2_tiles(hd)
    seqs = max(1, op.seqs)
    q_per_seq = op.q_tokens / seqs
    mma_cyc = 2.0 * (hd + dv) / (p.flop_per_clk_sm * p.mma_eff)
    exp_cyc = 1.0 / p.sfu_per_clk_sm
    per_pair = mma_cyc + exp_cyc - (p.softmax_overlap * min(mma_cyc, exp_cyc) if p.overlap_softmax else 0.0)
    if getattr(op, "latent", False):  # MQA over the latent: a token's query heads are rows of one tile
        q_tiles = seqs * math.ceil(q_per_seq * op.heads / br)
        ctas = q_tiles
        row_pairs = op.pairs * op.heads + q_tiles * br * bc / 2.0  # diagonal blocks computed in full
    else:
        q_tiles = seqs * math.ceil(q_per_seq / br)
        ctas = q_tiles * op.heads
        row_pairs = (op.pairs + q_tiles * br * bc / 2.0) * op.heads  # diagonal blocks computed in full
    total_cyc = row_pairs * per_pair
    if p.persistent:
        # the last Q tile reads every key of its sequence: the earlier context's and the chunk's own
        longest = br * op.kv_tokens / seqs * per_pair
        per_sm = max((total_cyc + ctas * p.cta_cycles) / p.sms, longest + p.cta_cycles)
    else:
        per_sm = math.ceil(ctas / p.sms) * (total_cyc / ctas + p.cta_cycles)
    if mla and not getattr(op, "latent", False):
        # MHA-form MLA kernel: the last Q tile of a causal sequence reads every key of it (critical
        # path when the tiles do not fill the SMs); the absorbed kernel (FA3, longest-first persistent
        # scheduler) is balanced: its aic rows with one head run in half the critical path
        per_sm = max(per_sm, br * op.kv_tokens / seqs * per_pair + p.cta_cycles)
    compute_s = per_sm / p.clock_hz
    if getattr(op, "kv_bytes", 0.0):  # earlier chunks' K/V stored quantized, this chunk's in 16 bit
        kv_bytes = kvw * op.kv_heads * (op.q_tokens * b + (op.kv_tokens - op.q_tokens) * op.kv_bytes)
        # each CTA widens the context K/V it streams, serialised with its MMAs
        deq_cta_cyc = op.kv_deq_ops * kvw * (op.kv_tokens - op.q_tokens) / seqs / p.vec_per_clk_sm
        compute_s += math.ceil(ctas / p.sms) * deq_cta_cyc / p.clock_hz
    else:
        kv_bytes = b * kvw * op.kv_tokens * op.kv_heads
    q_o_bytes = b * (hd + dv) * op.q_tokens * op.heads
    tiles_per_seq = q_tiles / seqs
    # Q tiles of one (sequence, head) run side by side (FA2's grid puts them fastest), so the L2
    # must hold the K/V of the (sequence, KV head) pairs in flight at once, not all of K/V
    groups = seqs * op.kv_heads
    in_flight_groups = max(1.0, min(groups, 2.0 * p.sms / max(tiles_per_seq, 1.0)))
    working_set = kv_bytes / groups * in_flight_groups
    miss = max(0.0, 1.0 - 0.5 * p.l2_bytes / working_set) if kv_bytes > 0 else 0.0
    hbm = q_o_bytes + kv_bytes * (1.0 + (tiles_per_seq - 1.0) * miss)
    memory_s = hbm / p.hbm_bw
    return p.kernel_fixed_s + prep_s(op, p, op.q_tokens) + max(compute_s, memory_s) + p.hbm_latency_s


def prep_s(op: Any, p: AttnParams, tokens: float) -> float:
    """The framework's preparation around the attention kernel: its fixed cost (prefill or decode)
    and the new tokens' Q, K, V read and written once (RoPE, KV-cache append)."""
    hd, _, kvw = head_dims(op)
    qkv = 2.0 * op.dtype_bytes * tokens * (hd * op.heads + kvw * op.kv_heads)
    return (p.prefill_fixed_s if op.kind == "attn_prefill" else p.decode_fixed_s) + qkv / p.hbm_bw


# (id(op), id(p), kernel) -> (op, p, seqs, split cap, {splits or "lean": lines}); bounded (each replica's timer has its
# own decode op per row count: 16 replicas x 256 row counts must fit)
_STRETCH: dict[tuple[int, int, str], tuple] = {}
STRETCH_MAX = 1 << 16


def decode_s(op: Any, kv_tokens: np.ndarray, p: AttnParams, mode: str = "split_kv") -> np.ndarray:
    """Decode attention of ``op`` (one layer) for each total context in ``kv_tokens``.

    A decode stretch asks for the same ``op`` and ``p`` over and over: the lean kernel's constants,
    and, when a split-KV stretch has the same split count at both ends, the two lines of the split-KV
    fast path below, are remembered per (op, params, kernel) and only evaluated over ``kv_tokens``
    (the same arithmetic as computing them afresh)."""
    kv = np.asarray(kv_tokens, dtype=np.float64)
    if mode == "lean":
        hit = _STRETCH.get((id(op), id(p), mode))
        if hit is not None and hit[0] is op and hit[1] is p:  # lean: one CTA per SM whatever the context
            c_flops, denom, b1, b0, bw, k0, lat, extra = hit[4]["lean"]
            return k0 + np.maximum(c_flops * kv / denom, (b1 * kv + b0) / bw) + lat + extra
    elif mode == "split_kv" and kv.size:
        hit = _STRETCH.get((id(op), id(p), mode))
        if hit is not None and hit[0] is op and hit[1] is p:
            _, _, seqs, cap, lines = hit
            lo = max(1.0, min(math.ceil(float(kv[0]) / seqs / 256.0), cap))
            if lo == max(1.0, min(math.ceil(float(kv[-1]) / seqs / 256.0), cap)):
                c = lines.get(lo)
                if c is not None:
                    return np.maximum(kv * c[0], kv * c[1] + c[2]) + c[3]
    return _decode_s(op, kv, p, mode)


def _decode_s(op: Any, kv: np.ndarray, p: AttnParams, mode: str) -> np.ndarray:
    op0, p0 = op, p
    latent = getattr(op, "latent", False)
    if latent and p.latent_hbm_bw:
        p = replace(p, hbm_bw=p.latent_hbm_bw)
    elif p.decode_hbm_bw:
        p = replace(p, hbm_bw=p.decode_hbm_bw)
    cta_in_flight = p.decode_cta_in_flight or DECODE_CTA_IN_FLIGHT
    if p.decode_max_group and op.heads > p.decode_max_group * op.kv_heads and not latent:
        op = replace(op, kv_heads=op.heads)  # a kernel without GQA sharing at this group size (e.g. TRT-LLM MMHA)
    hd, dv, kvw = head_dims(op)
    b = op.dtype_bytes
    mh = mma_heads(op, p)
    seqs = max(1, op.seqs)
    per_sm_bw = p.in_flight_per_sm / p.hbm_latency_s
    base = seqs * op.kv_heads
    # preparation kernels, and each (sequence, KV head) CTA's own cycles, spread over the SMs
    prep = prep_s(op, p, seqs) + math.ceil(base / p.sms) * p.decode_cta_cycles / p.clock_hz if p.decode_cta_cycles \
        or p.decode_fixed_s else 0.0
    quantized = bool(getattr(op, "kv_bytes", 0.0))
    if mode == "split_kv" and kv.size and not quantized:
        # fast path of a decode stretch: the split count changes only every 256 tokens of context,
        # so when it is the same at both ends the time is max of two lines in kv (same formulas as below)
        cap = math.ceil(2.0 * p.sms / base)
        lo, hi = (max(1.0, min(math.ceil(float(x) / seqs / 256.0), cap)) for x in (kv[0], kv[-1]))
        if lo == hi:
            ctas = base * lo
            extra = p.kernel_fixed_s + seqs * op.heads * dv * (4.0 * lo + b) / p.hbm_bw if lo > 1 else 0.0
            resident = min(ctas, float(p.sms * DECODE_CTAS_PER_SM))
            active_sms = min(float(p.sms), ctas)
            bw = min(min(p.hbm_bw, active_sms * per_sm_bw), resident * cta_in_flight / p.hbm_latency_s)
            c_kv = 2.0 * mh * (hd + dv) / (p.flop_per_clk_sm * p.sms * p.clock_hz * p.mma_eff)
            m_kv, m0 = b * kvw * op.kv_heads / bw, b * (hd + dv) * seqs * op.heads / bw
            const = p.kernel_fixed_s + prep + p.hbm_latency_s + extra
            if len(_STRETCH) > STRETCH_MAX:
                _STRETCH.clear()
            hit = _STRETCH.get((id(op0), id(p0), mode))
            if hit is None or hit[0] is not op0 or hit[1] is not p0:  # keep the originals alive with the key
                hit = _STRETCH[(id(op0), id(p0), mode)] = (op0, p0, seqs, cap, {})
            hit[4][lo] = (c_kv, m_kv, m0, const)
            return np.maximum(kv * c_kv, kv * m_kv + m0) + const
    flops = 2.0 * mh * (hd + dv) * kv
    compute = flops / (p.flop_per_clk_sm * p.sms * p.clock_hz * p.mma_eff)
    if quantized:
        nbytes = b * seqs * op.heads * (hd + dv) + kvw * op.kv_heads * op.kv_elem_bytes(kv)
        deq = op.kv_deq_ops * kvw * op.kv_heads * kv / (p.vec_per_clk_sm * p.sms * p.clock_hz)
        compute = np.maximum(compute, deq)
    else:
        nbytes = b * (seqs * op.heads * (hd + dv) + kv * kvw * op.kv_heads)
    extra = np.zeros_like(kv)
    if mode == "paged":
        ctas = np.full_like(kv, float(base))
    elif mode == "split_kv":
        ctx = kv / seqs
        splits = np.maximum(1.0, np.minimum(np.ceil(ctx / 256.0), np.ceil(2.0 * p.sms / base)))
        ctas = base * splits
        # the reduce kernel reads each split's partial output (fp32) and writes the result
        red_bytes = np.where(splits > 1, seqs * op.heads * dv * (4.0 * splits + b), 0.0)
        extra = np.where(splits > 1, p.kernel_fixed_s + red_bytes / p.hbm_bw, 0.0)
    elif mode == "lean":
        ctas = np.full_like(kv, float(p.sms))
        extra = np.full_like(kv, 2.0 * p.hbm_latency_s)  # in-kernel fix-up of the partial softmaxes
    else:
        raise ValueError(f"unknown decode kernel {mode!r} (paged, split_kv, lean)")
    # each CTA keeps only its own loads in flight (Little's law per CTA, then per SM)
    resident = np.minimum(ctas, float(p.sms * DECODE_CTAS_PER_SM))
    active_sms = np.minimum(float(p.sms), ctas)
    bw = np.minimum(np.minimum(p.hbm_bw, active_sms * per_sm_bw), resident * cta_in_flight / p.hbm_latency_s)
    if mode == "lean" and not quantized:  # remember the constants: the same operations, element by element
        sms = float(p.sms)
        bw0 = min(min(p.hbm_bw, min(sms, sms) * per_sm_bw), min(sms, float(p.sms * DECODE_CTAS_PER_SM))
                  * cta_in_flight / p.hbm_latency_s)
        b = float(b)
        if b.is_integer():  # bytes b * (S + kv*kvw*kv_heads) == b*S + (b*kvw*kv_heads)*kv: integers, exact
            if len(_STRETCH) > STRETCH_MAX:
                _STRETCH.clear()
            _STRETCH[(id(op0), id(p0), mode)] = (op0, p0, seqs, 0, {"lean": (
                2.0 * mh * (hd + dv), p.flop_per_clk_sm * p.sms * p.clock_hz * p.mma_eff,
                b * kvw * op.kv_heads, b * (seqs * op.heads * (hd + dv)), bw0, p.kernel_fixed_s + prep,
                p.hbm_latency_s, 2.0 * p.hbm_latency_s)})
    return p.kernel_fixed_s + prep + np.maximum(compute, nbytes / bw) + p.hbm_latency_s + extra


def fa_hbm_bytes(n: int, d: int, sram_bytes: float, dtype_bytes: float = 2.0) -> tuple[float, float]:
    """(standard attention, FlashAttention) HBM bytes for one head of length ``n`` (FA paper, Thm 2).

    Standard: read Q, K, write S (n x n), read S write P, read P and V, write O.
    FlashAttention (Algorithm 1): K, V read once; the outer loop runs over Tc = n / Bc key blocks
    with Bc = ceil(M / 4d) (M = SRAM in elements) and re-reads Q and re-reads/writes O each time,
    Theta(n^2 d^2 / M) in all.
    """
    std = dtype_bytes * (4.0 * n * d + 4.0 * n * n)
    bc = math.ceil(sram_bytes / dtype_bytes / (4 * d))
    t_c = math.ceil(n / bc)
    fa = dtype_bytes * (2.0 * n * d + 3.0 * n * d * t_c)
    return std, fa
