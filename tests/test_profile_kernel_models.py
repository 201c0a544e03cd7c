"""Framework profiles time their kernels with the models checked on that framework's kernel tables.

A profile's `timing:` block is what end-to-end runs use; `simulator.validation.aic.FRAMEWORK_TIMING` is
what the framework's aic kernel rows are predicted with (FIDELITY.md, H200 kernel tables). The two must
give the same time for the same op, and a profile that names some kernel classes of a per-class table
must keep the fitted values of the classes it does not name.
"""

from __future__ import annotations

import pytest

from hw_models.timing.tile import FIT_MEM_FLOOR, FIT_MEM_MULT, TileConfig
from simulator.config.loader import load_scenario
from simulator.runner import build_quantization
from simulator.validation.aic import FRAMEWORK_TIMING, _merged
from simulator.validation.kernels import gpu_config, make_backend
from workloads.llm import dense_ops

PROFILES = {"vllm": "vllm-0.12", "sglang": "sglang-0.5", "trtllm": "trtllm-1.0"}


def scenario(framework: str, tp: int = 2) -> dict:
    return {"hardware": {"device": {"kind": "gpu", "preset": "H200"}},
            "model": {"kind": "transformer", "preset": "Llama-3.1-70B"},
            "cluster": {"tensor_parallel": tp},
            "engine": {"max_model_len": 4096, "framework": framework},
            "policies": {"quantization": {"kind": "scheme", "preset": "W8A8-fp8"}},
            "workload": {"kind": "closed_loop", "clients": 1, "num_requests": 1,
                         "prompt_tokens": {"dist": "fixed", "value": 16},
                         "output_tokens": {"dist": "fixed", "value": 2}},
            "outputs": {"report": False, "chrome_trace": False, "events": False, "requests": False}}


@pytest.mark.parametrize("fw", sorted(PROFILES))
def test_a_profile_naming_some_kernel_classes_keeps_the_fitted_values_of_the_others(fw):
    sc = load_scenario(scenario(PROFILES[fw]))
    c = sc.timing.config
    named = sc.framework.timing
    for field, fitted in (("mem_traffic_multiplier", FIT_MEM_MULT), ("mem_kernel_floor_s", FIT_MEM_FLOOR)):
        table = getattr(c, field)
        for cls, value in fitted.items():
            want = named.get(field, {}).get(cls, value)
            assert table[cls] == pytest.approx(want, rel=1e-12), (fw, field, cls)


def test_a_partial_per_class_table_overrides_only_the_classes_it_names():
    c = TileConfig(mem_traffic_multiplier={"quant": 1.5}, mem_kernel_floor_s={"norm": 1e-6})
    assert c.mem_traffic_multiplier == {**FIT_MEM_MULT, "quant": 1.5}
    assert c.mem_kernel_floor_s == {**FIT_MEM_FLOOR, "norm": 1e-6}


@pytest.mark.parametrize("fw", ["vllm", "sglang"])
@pytest.mark.parametrize("tokens", [1, 16, 100, 128, 129, 1000, 8192])
def test_the_profile_times_an_fp8_linear_as_the_kernel_model_checked_on_its_gemm_rows(fw, tokens):
    """The per-tensor fp8 GEMMs of a Llama-3.1-70B TP2 iteration take the same time under the profile's
    timing block as under the framework's FRAMEWORK_TIMING (CUTLASS scaled_mm, not the default family).
    SGLang's activation-quantize kernels too (a block per token, as its aic fp8 GEMM rows are built);
    vLLM's profile keeps its flat per-tensor quantize kernel (the per-row one fitted on the aic rows made
    its end-to-end TPOT worse on the even lines, FIDELITY.md), so only its GEMMs are compared."""
    sc = load_scenario(scenario(PROFILES[fw]))
    g = gpu_config("H200")
    prof = sc.timing.cls(sc.timing.config, sc.device.config, None)
    checked = make_backend("tile", g, _merged(FRAMEWORK_TIMING[fw]))
    default = make_backend("tile", g)
    ops = dense_ops(tokens, tokens, sc.model.config, 2, build_quantization(sc), sc.framework.fusion)
    gemms = [op for op in ops if op.kind == "gemm" and op.dtype == "fp8"]
    quant = [op for op in ops if op.name.endswith("_quant")]
    # qkv, o, up, down; vLLM's compiled graph quantizes the QKV / gate-up / down inputs inside the norm and
    # activation kernels (act_quant_in_producer), so only the O projection's input has a quantize kernel
    assert len(gemms) == 4 and len(quant) == (4 if fw == "sglang" else 1)
    assert all(op.m == (tokens if fw == "sglang" else 0) for op in quant)
    timed = gemms + quant if fw == "sglang" else gemms
    t_prof = sum(prof.op_s(op) for op in timed)
    assert t_prof == pytest.approx(sum(checked.op_s(op) for op in timed), rel=1e-12)
    if tokens >= 100:  # (a weight-streaming GEMM takes the same time in both families)
        assert sum(prof.op_s(op) for op in gemms) != pytest.approx(sum(default.op_s(op) for op in gemms), rel=1e-3)


@pytest.mark.parametrize("fw", ["vllm", "trtllm"])
def test_the_profile_carries_its_frameworks_all_to_all_fit(fw):
    """The profile's DeepEP all-to-all constants are the ones fitted on its framework's aic all-to-all rows
    (FRAMEWORK_TIMING), not the fit over all frameworks (FIT_A2A): a dispatch of a decode-sized batch
    (low-latency kernels) and of a prefill-sized one (high-throughput kernels) over 8 GPUs of one NVLink4
    node takes the same time under both, and a different time under the pooled fit."""
    from hw_models.link import Link
    from hw_models.timing.tile import FIT_A2A
    from simulator.validation.kernels import link_config

    c = load_scenario(scenario(PROFILES[fw], tp=8)).timing.config
    fitted = _merged(FRAMEWORK_TIMING[fw])
    link = Link(link_config("NVLink4"))
    for mode, tokens in (("ll", 64), ("ht", 4096)):
        assert tokens <= c.alltoall_ll_max_tokens or mode == "ht"
        size = tokens * 8192 * 2 * 7 // 8  # bf16 hidden states, 7 of 8 GPUs remote

        def t(eff, lat, mode=mode, size=size):
            return link.alltoall_s(size, 8, eff[mode], lat[mode])

        prof = t(c.alltoall_efficiency, c.alltoall_latency_s)
        assert prof == pytest.approx(t(fitted["alltoall_efficiency"], fitted["alltoall_latency_s"]), rel=1e-12)
        assert prof != pytest.approx(t(FIT_A2A["efficiency"], FIT_A2A["latency_s"]), rel=1e-2)


@pytest.mark.parametrize("fw", sorted(PROFILES))
@pytest.mark.parametrize("seqs,ctx,group", [(1, 512, 8), (16, 4096, 8), (128, 4096, 8), (64, 32768, 4),
                                            (8, 1024, 40)])
def test_the_profile_times_decode_attention_as_the_kernel_model_checked_on_its_generation_rows(fw, seqs, ctx, group):
    """A decode attention kernel (8 KV heads of 128, bf16 K/V) takes the same time under the profile's timing
    block as under the framework's FRAMEWORK_TIMING, whose constants (decode op cost, cycles per CTA, the
    family's HBM share where fitted, TRT-LLM's split-KV kernel and GQA group limit) were fitted on that
    framework's aic generation-attention rows; the group of 40 query heads per KV head is past TRT-LLM's
    XQA limit (its MMHA kernel reads K/V per query head)."""
    from workloads.llm import Op

    sc = load_scenario(scenario(PROFILES[fw]))
    prof = sc.timing.cls(sc.timing.config, sc.device.config, None)
    checked = make_backend("tile", gpu_config("H200"), _merged(FRAMEWORK_TIMING[fw]))
    op = Op("attn_decode", "attn_decode", 1, seqs=seqs, q_tokens=seqs, kv_tokens=seqs * ctx, heads=8 * group,
            kv_heads=8, head_dim=128)
    import numpy as np

    kv = np.array([float(seqs * ctx)])
    assert float(prof.decode_attention_s(op, kv)[0]) == pytest.approx(float(checked.decode_attention_s(op, kv)[0]),
                                                                      rel=1e-12)
