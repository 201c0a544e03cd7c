"""Kernel and GPU-microarchitecture reproductions (docs/reproductions.md, "Kernels and GPU ...").

    python scenarios/papers/kernel_reproductions.py

Prints hwsim's figure for each published kernel result, using the ``tile`` backend (CUDA-graph
mode: kernel time only) and the GPU presets' datasheet numbers.
"""

from __future__ import annotations

import simulator.core.registry as reg
from hw_models.attention_kernels import fa_hbm_bytes
from simulator.config.loader import resolve_component
from workloads.llm import BatchShape, Op, lower


def backend(gpu: str = "A100-80GB", **over):
    g = resolve_component({"kind": "gpu", "preset": gpu}, reg.HARDWARE, "gpu").config
    c = resolve_component({"kind": "tile", "cuda_graphs": True, **over}, reg.TIMING, "timing")
    return c.cls(c.config, g, None)


def model(name: str):
    return resolve_component({"kind": "transformer", "preset": name}, reg.MODELS, "model").config


def prefill_s(b, m, tokens: int, chunk: int, tp: int = 1) -> float:
    t, done = 0.0, 0
    while done < tokens:
        n = min(chunk, tokens - done)
        t += sum(b.op_s(o) for o in lower(BatchShape(prefill=((n, done),), emitting=1), m, tp))
        done += n
    return t


def main() -> None:
    a100 = backend()
    print("1. FlashAttention HBM traffic (one head, d=64, SRAM 100 KiB) and speedup at 1K tokens")
    for n in (512, 1024, 2048, 4096, 8192):
        std, fa = fa_hbm_bytes(n, 64, 100 * 1024)
        print(f"   N={n:5d}: standard {std / 1e6:7.2f} MB  FlashAttention {fa / 1e6:6.2f} MB  ratio {std / fa:4.1f}x")
    # GPT-2 medium: 16 heads, d=64, batch 8 x 1K tokens; standard = QK^T GEMM, softmax (read S, write P),
    # PV GEMM, each a separate kernel over the n x n matrix in HBM
    n, h, d, batch = 1024, 16, 64, 8
    bh = batch * h
    # batched GEMMs: one launch, bh x the tiles of one head
    gemm = a100.gemm_plan(bh * n, n, d).time_s + a100.gemm_plan(bh * n, d, n).time_s
    std_t = gemm + a100.mem_kernel_s(bh * 2.0 * n * n * 2, "other") + a100.mem_kernel_s(bh * n * n * 2, "other")
    fa_op = Op("attn_prefill", "p", 1, seqs=batch, q_tokens=batch * n, kv_tokens=batch * n,
               pairs=batch * n * (n + 1) // 2, heads=h, kv_heads=h, head_dim=d)
    print(f"   GPT-2-medium attention, 8 x 1K: standard {std_t * 1e3:.2f} ms, FlashAttention-2 "
          f"{a100.op_s(fa_op) * 1e3:.2f} ms -> {std_t / a100.op_s(fa_op):.1f}x")
    print("2. FlashAttention-2 forward, causal, fraction of A100 dense BF16 peak (312 TFLOP/s)")
    for hd, heads in ((64, 32), (128, 16)):
        for n in (1024, 2048, 4096, 8192, 16384):
            batch = max(1, 16384 // n)
            op = Op("attn_prefill", "p", 1, seqs=batch, q_tokens=batch * n, kv_tokens=batch * n,
                    pairs=batch * n * (n + 1) // 2, heads=heads, kv_heads=heads, head_dim=hd)
            print(f"   hd={hd:3d} N={n:5d}: {op.flops() / a100.op_s(op) / 312e12 * 100:4.1f}% of peak")
    print("3. Lean Attention vs FlashAttention-2-style decode (one CTA per sequence x KV head), batch 1, 32 heads")
    for ctx in (16_384, 65_536, 262_144, 524_288):
        op = Op("attn_decode", "d", 1, seqs=1, q_tokens=1, kv_tokens=ctx, heads=32, kv_heads=32, head_dim=128)
        paged, lean = backend(decode_kernel="paged").op_s(op), backend(decode_kernel="lean").op_s(op)
        print(f"   ctx={ctx:7d}: paged {paged * 1e6:8.1f} us  lean {lean * 1e6:7.1f} us  speedup {paged / lean:4.2f}x")
    print("4. FlashDecoding++: flat small-batch GEMMs padded to the tile (Llama-2-7B QKV, N=12288, K=4096)")
    for m in (1, 2, 4, 8, 16, 32, 64):
        p = a100.gemm_plan(m, 12288, 4096)
        waste = 1.0 - m / (p.tile[0] * -(-m // p.tile[0]))
        print(f"   M={m:3d}: tile {p.tile_name:18s} padded tensor work wasted {waste * 100:5.1f}%")
    print("5. Roofline checks")
    cl = model("CodeLlama-34B")
    t4, t50 = prefill_s(a100, cl, 4096, 4096), prefill_s(a100, cl, 50_000, 4096)
    print(f"   CodeLlama-34B prefill on one A100: 4K {t4:.2f} s, 50K {t50:.1f} s (paper: ~0.9 s / ~14 s)")
    l8 = model("Llama-3.1-8B")
    t1m = prefill_s(a100, l8, 1_000_000, 16384)
    print(f"   Llama-3.1-8B 1M-token prefill on one A100 (16K chunks): {t1m / 60:.1f} min (paper: ~30 min)")
    h100 = backend("H100-SXM")
    l70 = model("Llama-3.1-70B")
    ops = lower(BatchShape(prefill=((8192, 0),), emitting=1), l70, 4)
    gemm_t = sum(h100.op_s(o) for o in ops if o.kind == "gemm")
    gemm_f = sum(o.flops() for o in ops if o.kind == "gemm")
    print(f"   Llama-3.1-70B TP4 on H100: GEMMs at {gemm_f / gemm_t / 1e12:.0f} TFLOP/s per GPU "
          f"(paper: 16K tok/s on 4 GPUs needs ~560 TFLOP/s per GPU); 8K-token prefill step "
          f"{sum(h100.op_s(o) for o in ops if o.kind != 'allreduce') * 1e3:.0f} ms of kernels -> "
          f"{8192 / sum(h100.op_s(o) for o in ops if o.kind != 'allreduce'):.0f} tok/s per replica")


if __name__ == "__main__":
    main()
