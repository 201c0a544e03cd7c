"""Published quantization results (docs/reproductions.md, ## Quantization): direction and a band."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from simulator.config.loader import load_scenario, resolve_component
from simulator.core import registry as reg
from simulator.op_breakdown import breakdown
from simulator.runner import memory_plan, run_scenario
from workloads.llm import GEMM, Op

KIVI = "scenarios/papers/kivi_llama2_7b_a100.yaml"
COMET = "scenarios/papers/comet_w4a4kv4_a100.yaml"


def backend(kind, gpu):
    c = resolve_component({"kind": kind}, reg.TIMING, "t")
    return c.cls(c.config, resolve_component({"kind": "gpu", "preset": gpu}, reg.HARDWARE, "d").config)


def scheme(preset):
    c = resolve_component({"kind": "scheme", "preset": preset}, reg.QUANTIZATION, "q")
    return c.cls(c.config)


def quantized(op, fmt):
    return replace(op, dtype=fmt.tensor_dtype, dtype_bytes=fmt.a_bytes, w_bytes=fmt.w_bytes,
                   out_bytes=2.0 if fmt.a_bytes != 2.0 else 0.0, deq_ops=fmt.deq_ops, deq_overlap=fmt.deq_overlap)


def marlin_speedups(gpu="A40", kind="tile"):
    """fp16 GEMM time / W4A16-Marlin time on MARLIN's 72k x 18k layer per batch size."""
    b, fmt = backend(kind, gpu), scheme("W4A16-marlin").linear("mlp_up", "fp16", 2.0)
    out = {}
    for m in (1, 16, 32, 64, 128):
        op = Op(GEMM, "mlp_up", 1, m=m, n=72 * 1024, k=18 * 1024, dtype="fp16")
        out[m] = b.op_s(op) / b.op_s(quantized(op, fmt))
    return out


def test_marlin_is_near_4x_over_fp16_up_to_batch_32_and_shrinks_at_64_to_128():
    s = marlin_speedups()  # A40 stands in for MARLIN's A10 (both GA102, ~ the same FLOP/byte)
    assert all(3.6 <= s[m] <= 3.95 for m in (1, 16, 32)), s  # paper: ~3.9x (ideal 3.88x at 4.125 bits)
    assert 2.5 <= s[64] <= 3.5 and 1.3 <= s[128] <= 2.2, s
    assert s[1] >= s[32] >= s[64] >= s[128]
    a100 = marlin_speedups("A100-80GB")  # lower FLOP/byte: the knee comes earlier
    assert a100[1] > 3.6 and a100[128] < s[128]


def comet_kernel_speedups():
    b, fmt = backend("tile", "A100-80GB"), scheme("W4A4KV4").linear("mlp_up", "fp16", 2.0)
    out = []
    for m in (16, 128, 512, 1024, 2048, 4096, 8192):
        for n, k in ((12288, 4096), (4096, 4096), (22016, 4096), (4096, 11008)):  # Llama-2-7B projections
            op = Op(GEMM, "mlp_up", 1, m=m, n=n, k=k, dtype="fp16")
            out.append(b.op_s(op) / b.op_s(quantized(op, fmt)))
    return np.array(out)


def test_comet_w4a4_gemms_beat_the_fp16_gemm_by_about_3x_on_an_a100():
    s = comet_kernel_speedups()
    assert s.min() > 2.0 and s.max() < 4.0  # int4 peak is 4x fp16
    assert 2.5 <= float(np.mean(s)) <= 3.6  # paper: 2.88x average vs cuBLAS


def throughput(path, preset=None):
    over = [f"policies.quantization={{kind: scheme, preset: {preset}}}"] if preset else []
    sc = load_scenario(path, over)
    return run_scenario(sc).summary["output_tokens_per_s"], sc


def test_comet_w4a4kv4_serving_raises_throughput_over_16_bit_on_an_a100():
    base, _ = throughput(COMET, "W16A16")
    comet, _ = throughput(COMET)
    assert 1.5 <= comet / base <= 4.5  # paper: 2.02x vs TensorRT-LLM; hwsim 3.6x (see docs)


def test_kivi_2bit_kv_stores_3_bits_per_element_and_raises_serving_throughput():
    # KIVI's memory (2.6x) and batch (4x) figures are arithmetic on this element size (rows
    # kivi_peak_memory / kivi_batch, input-bound); its throughput is row kivi_throughput. Here: the
    # element size from first principles -- 2 bits plus a 16-bit scale and a 16-bit zero point per
    # group of 32 = 3 bits against 16 -- and the direction of the serving result.
    fp16_tps, fp16 = throughput(KIVI, "W16A16")
    kivi_tps, kivi = throughput(KIVI)
    a, b = memory_plan(fp16), memory_plan(kivi)
    assert b.kv_bytes_per_token / a.kv_bytes_per_token == pytest.approx((2 + 2 * 16 / 32) / 16, rel=1e-12)
    # conservation: the same KV budget holds the 2-bit blocks plus fp16 residual windows reserved for
    # every batch slot (max_num_seqs 256 x 128 tokens)
    budget16 = a.kv_blocks * a.block_size * a.kv_bytes_per_token
    budget2 = b.kv_blocks * b.block_size * b.kv_bytes_per_token + 256 * 128 * a.kv_bytes_per_token
    assert budget2 == pytest.approx(budget16, rel=1e-3)
    assert kivi_tps > fp16_tps


def step_time(preset, rows, tokens, gpu="A100-80GB"):
    raw = {"hardware": {"device": {"kind": "gpu", "preset": gpu}, "timing": {"kind": "tile"}},
           "model": {"preset": "Llama-2-7B"}, "policies": {"quantization": {"kind": "scheme", "preset": preset}},
           "workload": {"kind": "synthetic", "num_requests": 1, "arrival": {"rate": "1/s"},
                        "prompt_tokens": {"dist": "fixed", "value": 8}, "output_tokens": {"dist": "fixed", "value": 8}}}
    sc = load_scenario(raw)
    return sum(r["time_s"] for r in breakdown(sc, tokens, rows, 512)), sc


def test_llm_int8_halves_weight_memory_but_its_decomposition_costs_time_at_small_batch():
    fp16, sc16 = step_time("W16A16", 1, 0)
    int8, sc8 = step_time("LLM-int8", 1, 0)
    smooth, _ = step_time("W8A8-int8", 1, 0)
    ratio = memory_plan(sc8).weight_bytes / memory_plan(sc16).weight_bytes
    assert 0.5 <= ratio <= 0.53  # 8-bit projections; embeddings and LM head stay 16 bit
    assert 1.0 < int8 / fp16 <= 1.3  # paper/HF: 15-23% slower (BLOOM-176B); hwsim +6% (Llama-2-7B)
    assert int8 / smooth > 1.3  # the decomposition, not int8 itself, costs the time
    pre16, _ = step_time("W16A16", 0, 2048)
    pre8, _ = step_time("LLM-int8", 0, 2048)
    assert pre8 / pre16 < 0.95  # at large batch the int8 tensor cores win


@pytest.mark.parametrize("gpu", ["A100-80GB", "H100-SXM"])
def test_weight_only_4_bit_decode_steps_gain_end_to_end_at_small_batch(gpu):
    fp16, _ = step_time("W16A16", 1, 0, gpu)
    w4, _ = step_time("W4A16-marlin", 1, 0, gpu)
    assert 1.6 <= fp16 / w4 <= 3.0  # MARLIN: up to 2.8x end to end in vLLM (hwsim 2.2x A100, 1.8x H100)
