"""GPU kernel study: published kernel-level results predicted by the ``tile`` backend.

Models: every figure is a prediction of the ``tile`` timing backend in CUDA-graph mode (kernel
    time only, no host launch overhead) from the GPU presets' datasheet numbers and the library
    constants fitted on measured A100 kernels (FIDELITY.md):
    1. FlashAttention's HBM traffic (Algorithm 1 I/O analysis) vs standard attention for one
       head, and the forward time of FlashAttention-2 vs standard attention (batched QK^T GEMM,
       softmax reading and writing the N x N matrix, PV GEMM: three kernels over HBM);
    2. FlashAttention-2 causal forward as a fraction of the GPU's dense 16-bit tensor peak;
    3. decode attention at long context, batch 1: a paged kernel with one CTA per (sequence,
       KV head) vs Lean Attention (stream-K over the context: every SM busy);
    4. FlashDecoding++'s observation that flat small-batch GEMMs padded to the library's tile
       waste most of the tensor work;
    5. roofline-style checks: a 34B model's prefill at 50K vs 4K tokens on one A100, a 1M-token
       prefill of an 8B model on one A100 (chunked), and the GEMM rate per H100 behind 16K tok/s
       of Llama-3.1-70B on 4 GPUs (all-reduce excluded).
Ignores: backward passes, dropout and masking kernels, host overheads.
Sources: Dao et al., FlashAttention (2022) and FlashAttention-2 (2023); Sanovar et al., Lean
    Attention (2024); Hong et al., FlashDecoding++ (2024); the roofline checks listed in the
    project's paper list.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

import simulator.core.registry as reg
from hw_models.attention_kernels import fa_hbm_bytes
from simulator.config.loader import resolve_component
from simulator.config.quantities import StrictConfig
from workloads.llm import BatchShape, Op, lower

Component = str | dict[str, Any]


class Config(StrictConfig):
    gpu: str = Field(default="A100-80GB", description="GPU preset of rows 1-5 (except the H100 check)")
    h100: str = Field(default="H100-SXM", description="GPU preset of the 70B throughput check")
    sram_bytes: int = Field(default=100 * 1024, gt=0, description="on-chip SRAM of the I/O analysis")
    fa_lengths: list[int] = Field(default_factory=lambda: [512, 1024, 2048, 4096, 8192])
    fa2_lengths: list[int] = Field(default_factory=lambda: [1024, 2048, 4096, 8192, 16384])
    peak_flops: float = Field(default=312e12, gt=0, description="dense 16-bit peak the FA2 paper divides by")
    lean_contexts: list[int] = Field(default_factory=lambda: [16_384, 65_536, 262_144, 524_288])
    flat_gemm_rows: list[int] = Field(default_factory=lambda: [1, 2, 4, 8, 16, 32, 64])
    prefill_chunk_34b: int = Field(default=4096, gt=0)
    prefill_chunk_1m: int = Field(default=16384, gt=0)
    prefill_tokens_1m: int = Field(default=1_000_000, gt=0)


def _backend(gpu: str, **over):
    g = resolve_component({"kind": "gpu", "preset": gpu}, reg.HARDWARE, "gpu").config
    c = resolve_component({"kind": "tile", "cuda_graphs": True, **over}, reg.TIMING, "timing")
    return c.cls(c.config, g, None)


def _model(name: str):
    return resolve_component({"kind": "transformer", "preset": name}, reg.MODELS, "model").config


def _prefill_s(b, m, tokens: int, chunk: int, tp: int = 1) -> float:
    t, done = 0.0, 0
    while done < tokens:
        n = min(chunk, tokens - done)
        t += sum(b.op_s(o) for o in lower(BatchShape(prefill=((n, done),), emitting=1), m, tp))
        done += n
    return t


def _prefill_op(batch: int, n: int, heads: int, d: int) -> Op:
    return Op("attn_prefill", "p", 1, seqs=batch, q_tokens=batch * n, kv_tokens=batch * n,
              pairs=batch * n * (n + 1) // 2, heads=heads, kv_heads=heads, head_dim=d)


def flash_attention(cfg: Config, a) -> dict:
    io = {n: fa_hbm_bytes(n, 64, cfg.sram_bytes) for n in cfg.fa_lengths}
    # GPT-2 medium: 16 heads, d=64, batch 8 x 1K tokens; batched GEMMs are one launch of bh x tiles
    n, h, d, batch = 1024, 16, 64, 8
    bh = batch * h
    gemm = a.gemm_plan(bh * n, n, d).time_s + a.gemm_plan(bh * n, d, n).time_s
    std = gemm + a.mem_kernel_s(bh * 2.0 * n * n * 2, "other") + a.mem_kernel_s(bh * n * n * 2, "other")
    fa = a.op_s(_prefill_op(batch, n, h, d))
    return {"fa_hbm_bytes_ratio": {n: s / f for n, (s, f) in io.items()},
            "gpt2_attention_standard_s": std, "gpt2_attention_fa2_s": fa, "gpt2_attention_speedup": std / fa}


def fa2_peak_fraction(cfg: Config, a) -> dict:
    out = {}
    for hd, heads in ((64, 32), (128, 16)):
        for n in cfg.fa2_lengths:
            op = _prefill_op(max(1, 16384 // n), n, heads, hd)
            out[f"hd{hd}_n{n}"] = op.flops() / a.op_s(op) / cfg.peak_flops
    return {"fa2_fraction_of_peak": out}


def lean_attention(cfg: Config) -> dict:
    paged, lean = _backend(cfg.gpu, decode_kernel="paged"), _backend(cfg.gpu, decode_kernel="lean")
    rows = {}
    for ctx in cfg.lean_contexts:
        op = Op("attn_decode", "d", 1, seqs=1, q_tokens=1, kv_tokens=ctx, heads=32, kv_heads=32, head_dim=128)
        rows[ctx] = {"paged_s": paged.op_s(op), "lean_s": lean.op_s(op), "speedup": paged.op_s(op) / lean.op_s(op)}
    return {"lean_vs_paged_decode": rows}


def flat_gemm_padding(cfg: Config, a) -> dict:
    rows = {}
    for m in cfg.flat_gemm_rows:
        p = a.gemm_plan(m, 12288, 4096)  # Llama-2-7B QKV projection
        rows[m] = {"tile": p.tile_name, "padding_waste": 1.0 - m / (p.tile[0] * -(-m // p.tile[0])),
                   "time_s": p.time_s}
    return {"flat_gemm": rows}


def roofline_checks(cfg: Config, a) -> dict:
    cl = _model("CodeLlama-34B")
    l8 = _model("Llama-3.1-8B")
    h100 = _backend(cfg.h100)
    ops = lower(BatchShape(prefill=((8192, 0),), emitting=1), _model("Llama-3.1-70B"), 4)
    gemm_t = sum(h100.op_s(o) for o in ops if o.kind == "gemm")
    gemm_f = sum(o.flops() for o in ops if o.kind == "gemm")
    step = sum(h100.op_s(o) for o in ops if o.kind != "allreduce")
    return {"codellama34b_prefill_4k_s": _prefill_s(a, cl, 4096, cfg.prefill_chunk_34b),
            "codellama34b_prefill_50k_s": _prefill_s(a, cl, 50_000, cfg.prefill_chunk_34b),
            "llama31_8b_prefill_1m_min": _prefill_s(a, l8, cfg.prefill_tokens_1m, cfg.prefill_chunk_1m) / 60,
            "llama31_70b_tp4_gemm_flops_per_gpu": gemm_f / gemm_t,
            "llama31_70b_tp4_prefill_tok_s_per_replica": 8192 / step}


def run(cfg: Config) -> dict:
    a = _backend(cfg.gpu)
    out: dict = {}
    for part in (flash_attention(cfg, a), fa2_peak_fraction(cfg, a), lean_attention(cfg),
                 flat_gemm_padding(cfg, a), roofline_checks(cfg, a)):
        out.update(part)
    return out
