"""vLLM 0.12's add + RMSNorm in a prefill step: one Inductor kernel (the residual add, the norm and the static
fp8 quantize of the next GEMM's input), timed as the bytes it moves at the measured rate of vLLM's per-tensor
quantize kernel on H200 (the profile's ``norm`` multiplier), and the profile's prefill attention as the
kernel model fitted on the framework's context-attention rows."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.config.loader import load_scenario
from simulator.runner import build_quantization
from simulator.validation.aic import FRAMEWORK_TIMING, _merged
from simulator.validation.kernels import gpu_config, make_backend
from workloads.llm import Op, dense_ops

PROFILES = {"vllm": "vllm-0.12", "sglang": "sglang-0.5", "trtllm": "trtllm-1.0"}


def scenario(framework: str, tp: int = 8) -> dict:
    return {"hardware": {"device": {"kind": "gpu", "preset": "H200"}},
            "model": {"kind": "transformer", "preset": "Llama-3.1-70B"},
            "cluster": {"tensor_parallel": tp},
            "engine": {"max_model_len": 16384, "framework": framework},
            "policies": {"quantization": {"kind": "scheme", "preset": "W8A8-fp8"}},
            "workload": {"kind": "closed_loop", "clients": 1, "num_requests": 1,
                         "prompt_tokens": {"dist": "fixed", "value": 16},
                         "output_tokens": {"dist": "fixed", "value": 2}},
            "outputs": {"report": False, "chrome_trace": False, "events": False, "requests": False}}


def _vllm():
    sc = load_scenario(scenario("vllm-0.12"))
    return sc, sc.timing.cls(sc.timing.config, sc.device.config, None)


@settings(max_examples=25, deadline=None)
@given(st.integers(256, 16384))
def test_vllm_add_norm_moves_its_bytes_at_the_quantize_kernels_rate(tokens):
    sc, b = _vllm()
    ops = dense_ops(tokens, tokens, sc.model.config, 8, build_quantization(sc), sc.framework.fusion)
    add_norm = [op for op in ops if op.name == "add_norm"]
    quant = [op for op in ops if op.name.endswith("_quant")]
    assert add_norm and len(quant) == 1  # the QKV / gate-up inputs are quantized inside the norm kernel
    h = sc.model.config.hidden_size
    # x and the residual in, the residual and the 16-bit output out: 8h bytes per token (the fp8 output moves 7h)
    assert add_norm[0].bytes == 8 * h * tokens
    norm = b.mem_kernel_s(add_norm[0].bytes, "norm")
    # the quantize kernel's rate over the bytes it moves (its multiplier is over exactly those)
    assert norm == pytest.approx(b.mem_kernel_s(add_norm[0].bytes, "quant"), rel=1e-12)
    # first principles: never faster than the bytes it moves at the HBM rating; more tokens never faster
    assert norm >= 7.0 * h * tokens / sc.device.config.memory_bw_bytes_per_s
    assert b.mem_kernel_s(add_norm[0].bytes + 8 * h, "norm") >= norm


def test_vllm_tp8_8192_token_add_norm_is_about_the_quantize_rate_not_the_a100_class_fit():
    """At 8192 tokens (Llama-3.1-70B, h 8192) one add + RMSNorm counts 537 MB: ~130 us at vLLM's measured quantize
    rate (~4.2 TB/s), where the A100-fitted class multiplier (2.06) gave ~305 us."""
    sc, b = _vllm()
    ops = dense_ops(8192, 8192, sc.model.config, 8, build_quantization(sc), sc.framework.fusion)
    op = next(o for o in ops if o.name == "add_norm")
    t = b.mem_kernel_s(op.bytes, "norm")
    assert 115e-6 < t < 145e-6
    assert 8 * 8192 * 8192 / t > 3.9e12


@pytest.mark.parametrize("fw", sorted(PROFILES))
@pytest.mark.parametrize("b,s,heads,kvh", [(1, 8192, 8, 1), (1, 16384, 64, 8), (4, 2048, 32, 8), (1, 128, 8, 1)])
def test_the_profile_times_prefill_attention_as_the_model_checked_on_its_context_rows(fw, b, s, heads, kvh):
    sc = load_scenario(scenario(PROFILES[fw], tp=2))
    prof = sc.timing.cls(sc.timing.config, sc.device.config, None)
    checked = make_backend("tile", gpu_config("H200"), _merged(FRAMEWORK_TIMING[fw]))
    op = Op("attn_prefill", "attn_prefill", 1, seqs=b, q_tokens=b * s, kv_tokens=b * s, pairs=b * s * (s + 1) // 2,
            heads=heads, kv_heads=kvh, head_dim=128)
    assert prof.op_s(op) == pytest.approx(checked.op_s(op), rel=1e-12)
