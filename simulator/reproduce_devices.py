"""Reproductions on devices other than NVIDIA GPUs: CPUs with table-lookup low-bit kernels (T-MAC),
CPU serving on a Xeon, an Apple-M-class SoC GPU serving from unified memory (llama.cpp). Rows of
:mod:`simulator.reproduce` (SECTION_MODULES); each measure function runs a scenario under
``scenarios/papers/`` with the row's inputs as ``--set`` overrides (memoised by
:func:`simulator.reproduce_measure.serve`).
"""

from __future__ import annotations

from simulator.reproduce import INPUT_BOUND, MECHANISM, Expectation, Input
from simulator.reproduce_measure import Figure, Params, measure, num, serve

SECTION = "CPUs, SoCs and other devices"
NOTE = ("Serving scenarios on `cpu` devices (timing backend `cpu`: GEMV at the CPU model's DRAM bandwidth, "
        "dequantizing or T-MAC table-lookup low-bit kernels, a thread barrier per op) and `npu` devices (a roofline "
        "at the preset's cited efficiencies). Decode speed of one request is the figure; the presets' numbers are "
        "datasheet values, several marked 'as recalled' in the preset files; no efficiency was fitted to these rows.")

TMAC = "T-MAC (Wei et al., EuroSys 2025)"
TMAC_FILE = "tmac_bitnet3b_m2ultra.yaml"
LLAMACPP = "llama.cpp Apple Silicon benchmark (discussion #4167, 2023)"
LLAMACPP_FILE = "llamacpp_llama2_7b_m2ultra.yaml"
INTEL = "Shen et al., Efficient LLM Inference on CPUs (arXiv 2311.00502, 2023)"
INTEL_FILE = "intel_cpu_llama2_7b_spr.yaml"
BARRIER = Input("barrier_us", 5.0, "hardware.device.gemm_fork_join_s (us, one per op)",
                "CPU model default (not fitted on these machines)")
MEM_EFF = Input("memory_efficiency", 0.8, "hardware.device.memory_efficiency",
                "Apple-M2-Ultra preset: assumption, a STREAM-like share of LPDDR5 peak")
DRAM_EFF = Input("dram_efficiency", 0.7, "hardware.device.bw_efficiency.dram", "CPU model default (not fitted)")


def _decode_tok_s(file: str, sets: tuple[str, ...]) -> tuple[float, float]:
    s = serve(file, sets).summary
    tpot = s["tpot_s"]["p50"]
    return 1.0 / tpot, tpot


def _tmac(p: Params, device: str = "") -> tuple[float, str]:
    sets = (f"hardware.timing.threads={int(p['threads'])}",
            f"hardware.device.gemm_fork_join_s={num(p['barrier_us'])}us")
    if device:
        sets = (f"hardware.device.preset={device}",) + sets
    tok_s, tpot = _decode_tok_s(TMAC_FILE, sets)
    return tok_s, f"BitNet-b1.58-3B, 2-bit LUT kernels on {int(p['threads'])} core(s): {tpot * 1e3:.1f} ms per token"


@measure
def tmac_m2ultra_tok_s(p: Params) -> Figure:
    return _tmac(p)


@measure
def tmac_rpi5_tok_s(p: Params) -> Figure:
    return _tmac(p, "Raspberry-Pi-5")


def _tmac_vs_dequant(p: Params) -> list[tuple[int, float, float]]:
    """(threads, speed-up, energy reduction) of the lookup kernels over the dequantizing ones."""
    out = []
    for t in (1, 4, 8):
        base = (f"hardware.timing.threads={t}", f"hardware.device.gemm_fork_join_s={num(p['barrier_us'])}us")
        lut = serve(TMAC_FILE, base + ("hardware.timing.kernels=lut",)).summary
        deq = serve(TMAC_FILE, base + ("hardware.timing.kernels=dequant",)).summary
        out.append((t, deq["tpot_s"]["p50"] / lut["tpot_s"]["p50"],
                    1.0 - lut["energy_per_output_token_j"] / deq["energy_per_output_token_j"]))
    return out


@measure
def tmac_speedup_vs_dequant(p: Params) -> Figure:
    rows = _tmac_vs_dequant(p)
    t, best, _ = max(rows, key=lambda r: r[1])
    return best, "decode speed-up over unpack-and-multiply kernels: " + ", ".join(
        f"{x:.2f}x on {n} core(s)" for n, x, _ in rows) + f" (largest on {t})"


@measure
def tmac_energy_reduction(p: Params) -> Figure:
    rows = _tmac_vs_dequant(p)
    t, _, best = max(rows, key=lambda r: r[2])
    return best * 100, "energy per token saved: " + ", ".join(f"{e:.0%} on {n} core(s)" for n, _, e in rows) + (
        f" (largest on {t}; energy = package idle power x time + FLOPs and DRAM bytes, hw_models.energy)")


@measure
def llamacpp_m2ultra_tok_s(p: Params) -> Figure:
    fmt = {4: ("policies.quantization.weights.dtype=int4",), 8: ("policies.quantization.weights.dtype=int8",),
           16: ("policies.quantization=null",)}[int(p["weight_bits"])]
    eff = f"hardware.device.memory_efficiency={num(p['memory_efficiency'])}"
    tok_s, tpot = _decode_tok_s(LLAMACPP_FILE, fmt + (eff,))
    return tok_s, f"Llama-2-7B {int(p['weight_bits'])}-bit weights, M2 Ultra GPU: {tpot * 1e3:.1f} ms per token"


@measure
def intel_cpu_ms_per_token(p: Params) -> Figure:
    _, tpot = _decode_tok_s(INTEL_FILE, (f"hardware.device.bw_efficiency.dram={num(p['dram_efficiency'])}",))
    return tpot * 1e3, "Llama-2-7B INT4 (g128) x INT8 on 56 Sapphire Rapids cores"


def _threads(n: int) -> Input:
    return Input("threads", n, "hardware.timing.threads", "the paper's thread count", True)


def _bits(b: int) -> Input:
    return Input("weight_bits", b, "policies.quantization.weights.dtype", "the llama.cpp format (Q4_0 / Q8_0 / F16)",
                 True)


ROWS: tuple[Expectation, ...] = (
    Expectation(
        "tmac_bitnet3b_m2ultra_1core", SECTION, TMAC,
        "table-lookup kernels decode BitNet-b1.58-3B at 30 tokens/s on one M2 Ultra core", 30.0, "tokens/s",
        "abstract", "1 / median TPOT of one request (64 prompt + 128 output tokens)", "tmac_m2ultra_tok_s", MECHANISM,
        TMAC_FILE, (_threads(1), BARRIER),
        driver="LUT kernel cost: 2 bit-planes / g=4 lookups per weight, 3 SIMD instructions per 16-lane lookup, "
               "4 SIMD pipes at 3.5 GHz (compute-bound on one core)",
        assumptions="M2 Ultra P-core pipes and clock as recalled (preset); embeddings and LM head in fp16"),
    Expectation(
        "tmac_bitnet3b_m2ultra_8core", SECTION, TMAC,
        "71 tokens/s on eight M2 Ultra cores", 71.0, "tokens/s", "abstract",
        "1 / median TPOT, 8 threads", "tmac_m2ultra_tok_s", MECHANISM, TMAC_FILE, (_threads(8), BARRIER),
        driver="LUT compute split over 8 cores; DRAM (8 x 100 GB/s per core, 800 GB/s socket) not binding",
        missed="hwsim scales the lookup kernels linearly over cores (about 5 ms per token); the paper's 2.4x from 1 to "
               "8 cores points at costs hwsim does not model for this runtime (per-op synchronisation beyond one "
               "5 us barrier, the fp16 attention / norm / LM-head parts, cluster bandwidth limits)"),
    Expectation(
        "tmac_bitnet3b_rpi5", SECTION, TMAC,
        "11 tokens/s on a Raspberry Pi 5 (phone-class SoC: 4x Cortex-A76)", 11.0, "tokens/s", "abstract",
        "1 / median TPOT, 4 threads", "tmac_rpi5_tok_s", MECHANISM, TMAC_FILE, (_threads(4), BARRIER),
        driver="LUT compute on 4 Cortex-A76 cores (2 SIMD pipes at 2.4 GHz) against 17 GB/s LPDDR4X",
        assumptions="thread count 4 (all cores) assumed"),
    Expectation(
        "tmac_bitnet3b_speedup_vs_llamacpp", SECTION, TMAC,
        "up to 4x the decode throughput of llama.cpp (BitNet-b1.58-3B, 2-bit)", 4.0, "x", "abstract",
        "largest ratio over 1 / 4 / 8 M2 Ultra cores of decode time with unpack-and-multiply kernels to decode time "
        "with lookup kernels", "tmac_speedup_vs_dequant", MECHANISM, TMAC_FILE, (BARRIER,),
        driver="instructions per weight: 3 / (16 x 4 / 2) for the lookups vs max(deq_ops, 2) unpack instructions "
               "on fp32 lanes + int8 multiply-adds",
        assumptions="hwsim's dequantizing kernel stands for llama.cpp's 2-bit (Q2_K) kernels"),
    Expectation(
        "tmac_bitnet3b_energy_reduction", SECTION, TMAC,
        "up to 70% less energy than llama.cpp", 70.0, "% energy per token saved", "abstract",
        "largest saving over 1 / 4 / 8 M2 Ultra cores of energy per output token (hw_models.energy) of the lookup "
        "kernels against the dequantizing ones", "tmac_energy_reduction", MECHANISM, TMAC_FILE, (BARRIER,),
        driver="decode time at the package's idle + dynamic power (M2 Ultra CPU preset: 5 W idle, 60 W TDP, "
               "as recalled)",
        assumptions="as the speed-up row; the paper measured power with an external meter"),
    Expectation(
        "llamacpp_llama2_7b_m2ultra_q4_0", SECTION, LLAMACPP,
        "M2 Ultra (76-core GPU) decodes Llama-2-7B Q4_0 at 94.27 tokens/s (tg128)", 94.27, "tokens/s",
        "benchmark table, M2 Ultra 76 GPU cores, Q4_0 TG", "1 / median TPOT of one request", "llamacpp_m2ultra_tok_s",
        INPUT_BOUND, LLAMACPP_FILE, (MEM_EFF, _bits(4)),
        driver="weight bytes / (800 GB/s x memory_efficiency): memory-bound decode",
        assumptions="LM head kept in fp16 (llama.cpp quantizes it to Q6_K)"),
    Expectation(
        "llamacpp_llama2_7b_m2ultra_q8_0", SECTION, LLAMACPP, "Q8_0: 66.64 tokens/s", 66.64, "tokens/s",
        "benchmark table, M2 Ultra 76 GPU cores, Q8_0 TG", "1 / median TPOT of one request", "llamacpp_m2ultra_tok_s",
        INPUT_BOUND, LLAMACPP_FILE, (MEM_EFF, _bits(8)), driver="as the Q4_0 row"),
    Expectation(
        "llamacpp_llama2_7b_m2ultra_f16", SECTION, LLAMACPP, "F16: 41.02 tokens/s", 41.02, "tokens/s",
        "benchmark table, M2 Ultra 76 GPU cores, F16 TG", "1 / median TPOT of one request", "llamacpp_m2ultra_tok_s",
        INPUT_BOUND, LLAMACPP_FILE, (MEM_EFF, _bits(16)), driver="as the Q4_0 row"),
    Expectation(
        "intel_cpu_llama2_7b_spr", SECTION, INTEL,
        "next-token latency of a 6-7B INT4 model on one 4th-gen Xeon socket: about 20 ms (the low end of 20-80 ms "
        "for 6B-20B models)", 20.0, "ms/token", "abstract (as recalled)", "median TPOT of one request",
        "intel_cpu_ms_per_token", INPUT_BOUND, INTEL_FILE, (DRAM_EFF,),
        driver="weight bytes / (307 GB/s DDR5 x DRAM efficiency): memory-bound decode on 56 cores",
        assumptions="Llama-2-7B stands for the paper's 6-7B models; 32 + 32 tokens, batch 1 (as recalled)"),
)
