"""Block-scaled fp8 (W8A8-fp8-block: DeepSeek-V3 / Qwen3-FP8 checkpoints): bytes with their scales,
the CUDA-core promotion from its mechanism, bounds against plain fp8 and the roofline, and the aic
H200 fp8_block GEMM rows."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import simulator.core.registry as reg
from hw_models.block_scaling import promotion_s
from hw_models.gemm_tiles import plan_gemm
from simulator.config.loader import resolve_component
from workloads.llm import GEMM, BatchShape, Op, lower

AIC = Path(__file__).resolve().parents[2] / "shared" / "validation" / "aic"
needs_aic = pytest.mark.skipif(not (AIC / "h200_sxm" / "gemm").is_dir(), reason="../shared/validation/aic not present")


def scheme(preset: str = "W8A8-fp8-block"):
    comp = resolve_component({"kind": "scheme", "preset": preset}, reg.QUANTIZATION, "quantization")
    return comp.cls(comp.config)


def backend(kind: str, gpu: str = "H200", **over):
    g = resolve_component({"kind": "gpu", "preset": gpu}, reg.HARDWARE, "gpu").config
    comp = resolve_component({"kind": kind, **over}, reg.TIMING, "timing")
    return comp.cls(comp.config, g, None)


def gemm_op(m: int, n: int, k: int, fmt) -> Op:
    return Op(GEMM, "gemm", 1, m=m, n=n, k=k, dtype=fmt.tensor_dtype, dtype_bytes=fmt.a_bytes, w_bytes=fmt.w_bytes,
              out_bytes=2.0, scale_block_k=fmt.scale_block_k)


def test_the_block_scales_add_one_fp32_per_128x128_weights_and_per_128_activations():
    fmt = scheme().linear("mlp_up", "bf16", 2.0)
    assert fmt.tensor_dtype == "fp8" and fmt.scale_block_k == 128
    assert fmt.w_bytes == 1.0 + 4.0 / (128 * 128)
    assert fmt.a_bytes == 1.0 + 4.0 / 128
    plain = scheme("W8A8-fp8").linear("mlp_up", "bf16", 2.0)
    assert (plain.w_bytes, plain.a_bytes, plain.scale_block_k) == (1.0, 1.0, 0)


def test_deepseek_v3_weights_under_fp8_block_are_about_one_byte_per_parameter():
    m = resolve_component({"kind": "transformer", "preset": "DeepSeek-V3"}, reg.MODELS, "model").config
    total = scheme().weight_bytes(m)
    # every projection at 1 + 4/16384 bytes; the input embedding and norms stay in bf16 (0.93B params)
    assert total / m.num_params() == pytest.approx(1.0 + 0.93e9 / m.num_params(), rel=0.002)


def test_a_block_scaled_lowering_marks_each_gemm_and_quantizes_activations_per_group():
    m = resolve_component({"kind": "transformer", "preset": "Llama-3.1-8B"}, reg.MODELS, "model").config
    ops = lower(BatchShape(prefill=((512, 0),), emitting=1), m, 1, scheme())
    up = next(op for op in ops if op.name == "mlp_up")
    assert up.scale_block_k == 128 and up.dtype == "fp8"
    assert any(op.name == "mlp_up_quant_group" for op in ops)
    head = next(op for op in ops if op.name == "lm_head")
    assert head.scale_block_k == 0  # the LM head stays in 16 bit


def test_the_promotion_costs_one_fp32_fma_per_output_per_128_of_k_on_the_busy_sms():
    tb = backend("tile", cuda_graphs=True)
    fmt = scheme().linear("gemm", "bf16", 2.0)
    p = tb.gemm_params("fp8")
    m, n, k = 8192, 8192, 8192
    plan = plan_gemm(m, n, k, fmt.a_bytes, p, fmt.w_bytes, 2.0)
    bm, bn, _ = plan.tile
    hand = plan.waves * plan.ctas_per_sm * bm * bn * math.ceil(k / plan.split_k / 128) / p.vec_per_clk_sm / p.clock_hz
    assert promotion_s(plan, k, 128, p) == pytest.approx(hand)
    assert tb.op_s(gemm_op(m, n, k, fmt)) == pytest.approx(plan.time_s + hand)
    # on an H200 that is 128 FMAs / clock / SM against a 128x128x128 fp8 MMA block of ~4.2 MFLOP:
    # 12-25 % of a large GEMM (the aic tables show fp8_block 12-18 % slower than fp8 at the largest shapes)
    assert 0.10 < hand / plan.time_s < 0.25


@settings(max_examples=60, deadline=None)
@given(m=st.integers(1, 16384), n=st.integers(1, 32768).map(lambda x: 16 * max(1, x // 16)),
       k=st.integers(1, 16384).map(lambda x: 16 * max(1, x // 16)))
def test_a_block_scaled_fp8_gemm_is_never_faster_than_plain_fp8_or_than_its_roofline(m, n, k):
    tile, roof = backend("tile", cuda_graphs=True), backend("roofline", launch_overhead=False)
    block = scheme().linear("gemm", "bf16", 2.0)
    plain = scheme("W8A8-fp8").linear("gemm", "bf16", 2.0)
    ob, op = gemm_op(m, n, k, block), gemm_op(m, n, k, plain)
    assert tile.op_s(ob) >= tile.op_s(op)
    assert roof.op_s(ob) >= roof.op_s(op)
    assert tile.op_s(ob) >= roof.op_s(ob)


@needs_aic
def test_the_h200_fp8_block_gemm_rows_are_predicted_within_the_stated_bound():
    """FIDELITY.md "MLA attention and block-scaled fp8 (H200)": SGLang 13.9 % and TensorRT-LLM 13.1 %
    median APE on all their fp8_block rows; here every 20th row of each (a fixed sample), bound 17 %.
    vLLM 0.24's fp8_block rows (a 60-180 us floor no mechanism here produces) are reported, not bounded."""
    pytest.importorskip("pyarrow")
    from simulator.validation.aic import _gemm_rows, predict_aic
    from simulator.validation.kernels import gpu_config

    rows = [r for r in _gemm_rows(AIC / "h200_sxm", Counter()) if r.op == "gemm fp8_block"]
    assert {r.source.split()[0] for r in rows} == {"sglang", "trtllm", "vllm"}
    sample = [r for fw in ("sglang", "trtllm") for r in [x for x in rows if x.source.startswith(fw)][::20]]
    pred = np.asarray(predict_aic(sample, "tile", gpu_config("H200")).predicted)
    meas = np.array([r.measured_s for r in sample])
    for fw in ("sglang", "trtllm"):
        idx = [i for i, r in enumerate(sample) if r.source.startswith(fw)]
        ape = np.abs(pred[idx] / meas[idx] - 1.0)
        assert np.median(ape) <= 0.17, (fw, np.median(ape))
