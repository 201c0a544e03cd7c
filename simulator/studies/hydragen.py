"""Hydragen study: decode attention over a prefix shared by N requests, split into prefix + suffix.

Models: one decode step of N requests that share a P-token prefix and each own S tokens.
    Both systems use the FlashAttention-2 split-KV decode kernel (``fa2_attention_s``): a CTA takes
    a 64-row block of queries of one KV head and streams a split of that head's K/V in kBlockN
    tiles (cp.async double buffering); the kernel time is the largest of the tile-load latency
    chain x waves, the unique K/V bytes over achievable HBM bandwidth, the bytes its CTAs request
    over L2 bandwidth (row blocks sharing a tile hit L2), and the MMA + exp work per SM with wave
    quantisation; a combine kernel when split.
    ``standard``: each request attends to its own P + S tokens (the prefix stored once but read
    once per request: N x P x KV bytes, each CTA only ``group`` = heads / KV heads query rows,
    i.e. a matrix-vector product on the tensor cores).
    ``hydragen``: prefix attention as one kernel whose query rows are all N requests' heads of a
    KV head (N x group rows: matrix-matrix, prefix K/V read once from HBM), suffix attention per
    request over S tokens, and a combine of the two partial softmaxes by their log-sum-exp
    (an elementwise kernel over N x heads x head_dim fp32 partials).
    End to end: tokens/s = N / (tile backend's dense ops of N rows + layers x attention).
Ignores: KV capacity (both store the prefix once), tensor parallelism, prefill of the prefix,
    inter-request suffix length spread, the hierarchical (multi-level) prefixes of the paper.
Sources: Juravsky et al., "Hydragen: High-Throughput LLM Inference with Shared Prefixes" (2024):
    up to 32x end-to-end throughput vs vLLM for CodeLlama-13b with batch up to 1024-2048 and
    prefixes up to 16K; the gain grows with batch and prefix length. FA2 kernel shapes as in
    ``simulator.studies.vattention``.
"""

from __future__ import annotations

import math
from typing import Any

from pydantic import Field

from simulator.config.quantities import PositiveBytesPerS, StrictConfig
from simulator.studies.vattention import Component, Hw, dense_step_s, fa2_num_splits, resolve

CODELLAMA_13B = {"preset": "Llama-2-13B", "name": "CodeLlama-13b", "vocab_size": 32016, "max_position": 16384}


class Config(StrictConfig):
    model: Component = Field(default_factory=lambda: dict(CODELLAMA_13B))
    gpus: list[Component] = Field(default_factory=lambda: ["A100-80GB", "H100-SXM"])
    batches: list[int] = Field(default_factory=lambda: [1, 16, 256, 1024])
    prefixes: list[int] = Field(default_factory=lambda: [1024, 4096, 16384])
    suffix_tokens: int = Field(default=128, ge=1, description="each request's own tokens (question + generated)")
    l2_bw: PositiveBytesPerS | None = Field(default=None, description="None: preset or 2.3 x HBM (estimate)")


def fa2_attention_s(hw: Hw, m: Any, seqs: int, ctx: int, rows: int) -> dict:
    """FA2 split-KV attention: ``seqs`` independent K/V streams of ``ctx`` tokens per KV head, each
    read by ``rows`` query rows; seconds per layer incl. launches, and the unique K/V bytes."""
    d, db, hkv = m.head_dim, m.dtype_bytes, m.num_kv_heads
    bm, bn = 64, (256 if d <= 64 else 128 if d <= 128 else 64)
    per_sm = max(1, int(hw.smem // ((bm + 2 * bn) * d * db)))
    mblocks, n_blocks = math.ceil(rows / bm), math.ceil(ctx / bn)
    splits = fa2_num_splits(seqs * hkv * mblocks, hw.sms * per_sm, n_blocks)
    ctas = seqs * hkv * mblocks * splits
    tiles = math.ceil(n_blocks / splits)
    kv = seqs * 2.0 * hkv * ctx * d * db
    q_o = 2.0 * seqs * hkv * rows * d * db
    comp_cyc = 4.0 * bm * bn * d / (hw.flop_clk_sm * hw.mma_eff) + bm * bn / hw.sfu
    compute = math.ceil(ctas / hw.sms) * tiles * comp_cyc / hw.clock
    chain = math.ceil(ctas / (hw.sms * per_sm)) * 2 * tiles * hw.hbm_lat / hw.clock
    t = hw.launch_s + hw.fixed_s + max(chain, (kv + q_o) / hw.hbm_bw, (kv * mblocks + q_o) / hw.l2_bw, compute)
    if splits > 1:
        t += hw.launch_s + hw.fixed_s + seqs * hkv * rows * splits * (d + 1) * 4.0 / hw.hbm_bw
    return {"s": t, "kv_bytes": kv, "splits": splits, "ctas": ctas}


def standard_s(hw: Hw, m: Any, n: int, prefix: int, suffix: int) -> dict:
    return fa2_attention_s(hw, m, n, prefix + suffix, m.num_heads // m.num_kv_heads)


def hydragen_s(hw: Hw, m: Any, n: int, prefix: int, suffix: int) -> dict:
    group = m.num_heads // m.num_kv_heads
    pre = fa2_attention_s(hw, m, 1, prefix, n * group)
    suf = fa2_attention_s(hw, m, n, suffix, group)
    # LSE combine: read two fp32 partial outputs + LSEs, write the 16-bit result
    comb_bytes = n * m.num_heads * (2 * (m.head_dim + 1) * 4.0 + m.head_dim * m.dtype_bytes)
    comb = hw.launch_s + hw.fixed_s + comb_bytes / hw.hbm_bw
    return {"s": pre["s"] + suf["s"] + comb, "kv_bytes": pre["kv_bytes"] + suf["kv_bytes"],
            "prefix_s": pre["s"], "suffix_s": suf["s"], "combine_s": comb}


def run(cfg: Config) -> dict:
    out: dict = {}
    best: dict[str, float] = {}
    for gpu in cfg.gpus:
        m, g, hw, tb = resolve(cfg.model, gpu, cfg.l2_bw)
        tag = gpu if isinstance(gpu, str) else g.name
        for n in cfg.batches:
            dense = dense_step_s(tb, m, n)
            for p in cfg.prefixes:
                st, hy = standard_s(hw, m, n, p, cfg.suffix_tokens), hydragen_s(hw, m, n, p, cfg.suffix_tokens)
                tok_st = n / (dense + m.num_layers * st["s"])
                tok_hy = n / (dense + m.num_layers * hy["s"])
                k = f"{tag} N{n} P{p}"
                out[f"attn_speedup {k}"] = st["s"] / hy["s"]
                out[f"throughput_speedup {k}"] = tok_hy / tok_st
                out[f"hydragen_tok_s {k}"] = tok_hy
                out[f"standard_tok_s {k}"] = tok_st
                best[tag] = max(best.get(tag, 0.0), tok_hy / tok_st)
    return {"model": m.name, **{f"max_throughput_speedup {k}": v for k, v in best.items()}, **out}
