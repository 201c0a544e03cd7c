"""The reproductions measured by studies (``type: study`` scenarios: kernels, offloading, storage,
weight streaming) and MCU runs: one function per metric of :mod:`simulator.reproduce`, registered
in :data:`simulator.reproduce_measure.MEASURES` (see that module)."""

from __future__ import annotations

from simulator.reproduce_measure import Figure, Params, mcu, measure, num, study

# -- kernels ---------------------------------------------------------------------------------------

def kernels(p: Params) -> dict:
    sets = [f"{k}={num(v)}" for k, v in sorted(p.items()) if k in ("sram_bytes", "peak_flops", "prefill_chunk_34b",
                                                                     "prefill_chunk_1m")]
    return study("gpu_kernels_a100.yaml", tuple(sets))


@measure
def fa_io_ratio(p: Params) -> Figure:
    r = kernels(p)["fa_hbm_bytes_ratio"][1024]
    return r, "HBM bytes, standard / FlashAttention, one head, d=64, N=1024"


@measure
def fa_gpt2_speedup(p: Params) -> Figure:
    r = kernels(p)
    a, b = r["gpt2_attention_standard_s"], r["gpt2_attention_fa2_s"]
    return a / b, f"GPT-2-medium attention forward, 8 x 1K: standard {a * 1e3:.2f} ms vs FA2 {b * 1e3:.3f} ms"


@measure
def fa2_peak_share(p: Params) -> Figure:
    f = kernels(p)["fa2_fraction_of_peak"]
    return max(f.values()), f"causal forward, best of hd 64/128 x 1K-16K (hd 128 at 1K: {f['hd128_n1024']:.2f})"


@measure
def lean_512k(p: Params) -> Figure:
    row = kernels(p)["lean_vs_paged_decode"][524288]
    return row["speedup"], f"paged {row['paged_s'] * 1e3:.1f} ms vs lean {row['lean_s'] * 1e3:.1f} ms at 512K"


@measure
def prefill_34b_50k(p: Params) -> Figure:
    r = kernels(p)
    return r["codellama34b_prefill_50k_s"], (f"CodeLlama-34B, 4K chunks; 4K context "
                                             f"{r['codellama34b_prefill_4k_s']:.2f} s")


@measure
def prefill_8b_1m(p: Params) -> Figure:
    return kernels(p)["llama31_8b_prefill_1m_min"], "Llama-3.1-8B, 16K chunks, minutes of kernels"


@measure
def h100_70b_tok_s(p: Params) -> Figure:
    r = kernels(p)
    return (r["llama31_70b_tp4_prefill_tok_s_per_replica"],
            f"GEMMs at {r['llama31_70b_tp4_gemm_flops_per_gpu'] / 1e12:.0f} TFLOP/s per GPU; all-reduce excluded")


def vattention(p: Params) -> dict:
    sets = []
    if "l2_bw_gb_s" in p:
        sets.append(f"l2_bw={num(p['l2_bw_gb_s'])}GB/s")
    if "flashinfer_rel_efficiency" in p:
        sets.append(f"flashinfer_rel_efficiency={num(p['flashinfer_rel_efficiency'])}")
    return study("vattention_kernels.yaml", tuple(sets))


@measure
def vattention_decode(p: Params) -> Figure:
    r = vattention(p)
    return r["max_decode_step_speedup"], f"decode step, best over Yi-6B/Llama-3-8B x batch x context " \
                                         f"(attention kernel {r['max_decode_attn_speedup']:.2f}x)"


@measure
def vattention_prefill_fa(p: Params) -> Figure:
    r = vattention(p)
    return r["max_prefill_vs_paged_fa"], f"shared-memory ceiling {r['prefill_smem_serial_ceiling']:.2f}x"


@measure
def vattention_prefill_flashinfer(p: Params) -> Figure:
    return vattention(p)["max_prefill_vs_flashinfer"], "best over models and contexts"


@measure
def hydragen_kernel(p: Params) -> Figure:
    r = study("hydragen_shared_prefix.yaml", (f"suffix_tokens={int(p['suffix_tokens'])}",))
    return r["max_throughput_speedup A100-80GB"], "A100-80GB, best over N <= 1024, P <= 16K"


@measure
def cachegen_delay(p: Params) -> Figure:
    r = study("cachegen_llama2_7b.yaml", (f"compression_ratio={num(p['compression_ratio'])}",
                                          f"link_bw={num(p['link_bw_gb_s'])}GB/s",
                                          f"decode_bytes_per_s={num(p['decode_gb_s'])}GB/s"))
    return r["delay_gain_vs_quantized"], (f"{r['cachegen_s']:.3f} s vs {r['fetch_quantized_s']:.3f} s for 8-bit KV "
                                          f"({r['delay_gain_vs_quantized'] / r['bandwidth_saving_vs_quantized']:.2f} "
                                          f"x compression_ratio)")


def _mcu_sets(p: Params) -> tuple[str, ...]:
    return tuple(f"{k}={int(v)}" for k, v in sorted(p.items()))


@measure
def mbv2_peak_sram(p: Params) -> Figure:
    s = mcu("mcunetv2_patch.yaml", _mcu_sets(p))
    return s["layer_by_layer_peak_bytes"] / 1024, f"{s['layer_by_layer_peak_bytes']:,} B at " \
                                                  f"{s['layer_by_layer_peak_layer']}"


@measure
def mcunetv2_cut(p: Params) -> Figure:
    s = mcu("mcunetv2_patch.yaml", _mcu_sets(p))
    return s["peak_reduction"], f"{s['layer_by_layer_peak_bytes']:,} B -> {s['patch_peak_bytes']:,} B at " \
                                f"{s['patch_peak_layer']}"


@measure
def quantmcu_bitops(p: Params) -> Figure:
    s = mcu("mixed_precision_patch.yaml")
    return s["bitops_reduction_vs_int8"], f"latency {s['latency_ms']:.0f} ms on the STM32H743"
