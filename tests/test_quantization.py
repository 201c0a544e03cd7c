"""Quantization schemes: effective-bits arithmetic, memory plan, timing properties, clear errors."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from simulator.config.loader import load_scenario, resolve_component
from simulator.core import registry as reg
from simulator.core.errors import CapacityError, ConfigError
from simulator.op_breakdown import breakdown
from simulator.runner import Simulation, memory_plan
from workloads.llm import GEMM, BatchShape, Op, decode_attention, lower

GPUS = ("A100-80GB", "H100-SXM", "L40S", "A40")


def dev(name):
    return resolve_component({"kind": "gpu", "preset": name}, reg.HARDWARE, "d").config


def backend(kind, name):
    c = resolve_component({"kind": kind}, reg.TIMING, "t")
    return c.cls(c.config, dev(name))


def scheme(preset=None, **over):
    block = {"kind": "scheme", **({"preset": preset} if preset else {}), **over}
    c = resolve_component(block, reg.QUANTIZATION, "policies.quantization")
    return c.cls(c.config)


def model(name="Llama-2-7B"):
    return resolve_component({"preset": name}, reg.MODELS, "model", default_kind="transformer").config


def scenario(quant=None, gpu="A100-80GB", **extra):
    raw = {"hardware": {"device": {"kind": "gpu", "preset": gpu}, "timing": {"kind": "roofline"}},
           "model": {"preset": "Llama-2-7B"},
           "workload": {"kind": "synthetic", "num_requests": 20, "arrival": {"rate": "5/s"},
                        "prompt_tokens": {"dist": "fixed", "value": 256},
                        "output_tokens": {"dist": "fixed", "value": 32}}, **extra}
    if quant is not None:
        raw["policies"] = {"quantization": quant}
    return load_scenario(raw)


def test_four_bit_weights_with_group_128_cost_4_125_bits_so_70b_parameters_take_36_1_gb():
    from policies.quantization.scheme import effective_bits

    assert effective_bits(4, 128) == 4.125  # one fp16 scale per 128 weights
    assert effective_bits(4, 128, 16, 4) == 4.15625  # plus a packed 4-bit zero point (AWQ)
    assert 70e9 * effective_bits(4, 128) / 8 == 36.09375e9
    m = model("Llama-2-70B")
    s = scheme("W4A16-marlin")
    linear = 68_451_041_280  # every projection of Llama-2-70B (embeddings, LM head and norms excluded)
    assert s.weight_bytes(m) == linear * 4.125 / 8 + (m.num_params() - linear) * 2 == 36_346_281_984
    assert s.weight_bytes(m) / m.weight_bytes() == pytest.approx(0.2635, abs=1e-4)


def test_kv_quantization_grows_the_kv_capacity_by_the_bits_saved_less_the_residual_windows():
    base = memory_plan(scenario())
    int8 = memory_plan(scenario({"kind": "scheme", "preset": "KV-int8"}))
    kivi = memory_plan(scenario({"kind": "scheme", "preset": "KV-int2"}))
    assert int8.kv_bytes_per_token == base.kv_bytes_per_token * 8.125 / 16  # per-head-vector fp16 scale
    assert int8.kv_blocks == pytest.approx(base.kv_blocks * 16 / 8.125, rel=1e-3)
    assert kivi.kv_bytes_per_token == base.kv_bytes_per_token * 3 / 16  # 2 bits + (scale + zero) / 32
    assert kivi.kv_residual_bytes == 256 * 128 * base.kv_bytes_per_token  # max_num_seqs windows of 128 tokens
    assert 3.5 < kivi.kv_blocks / base.kv_blocks < 16 / 3  # 3.87: the windows cost 17 GiB


def test_the_unquantized_preset_lowers_to_exactly_the_ops_of_no_scheme():
    m, shape = model(), BatchShape(prefill=((300, 100),), decode_rows=7, decode_kv=7000, emitting=8)
    assert lower(shape, m, 1, scheme("W16A16")) == lower(shape, m, 1)
    assert lower(shape, m, 2, None) == lower(shape, m, 2)


@pytest.mark.parametrize("gpu", GPUS)
@pytest.mark.parametrize("kind", ["roofline", "tile"])
def test_fewer_weight_bits_are_never_slower_when_the_gemm_is_memory_bound(gpu, kind):
    b = backend(kind, gpu)
    for m, n, k in [(1, 12288, 4096), (4, 4096, 11008), (16, 22016, 4096), (8, 32000, 4096)]:
        times = []
        for w in ("auto", "int8", "int4", "int2"):
            fmt = scheme(weights={"dtype": w, "group_size": 128}).linear("mlp_up", "bf16", 2.0)
            op = Op(GEMM, "mlp_up", 32, m=m, n=n, k=k)
            if fmt is not None:
                op = replace(op, w_bytes=fmt.w_bytes, deq_ops=fmt.deq_ops, deq_overlap=fmt.deq_overlap)
            times.append(b.op_s(op))
        assert times == sorted(times, reverse=True), (m, n, k, times)
        assert times[2] < 0.5 * times[0]


@pytest.mark.parametrize("kind", ["roofline", "tile"])
def test_quantized_decode_attention_still_vectorises_and_agrees_with_one_op_at_a_time(kind):
    b = backend(kind, "A100-80GB")
    s = scheme("KV-int2")
    op = decode_attention(model(), 1, 16, 0, s)
    kv = np.array([16, 2048, 16 * 4096, 16 * 20000])
    vec = b.decode_attention_s(op, kv)
    one = [b.op_s(replace(op, kv_tokens=int(k))) for k in kv]
    assert np.allclose(vec, one, rtol=1e-12)
    plain = b.decode_attention_s(decode_attention(model(), 1, 16, 0), kv)
    assert vec[-1] < 0.3 * plain[-1]  # long contexts read ~3/16 of the bytes
    assert vec[0] == pytest.approx(plain[0], rel=0.05)  # all within the fp16 residual window


@pytest.mark.parametrize("preset,gpu,dtype", [("W8A8-fp8", "A100-80GB", "fp8"), ("W4A4KV4", "H100-SXM", "int4"),
                                              ("W8A8-fp8", "A40", "fp8")])
def test_a_scheme_the_gpu_cannot_run_is_one_clear_error_naming_gpu_and_dtype(preset, gpu, dtype):
    with pytest.raises(CapacityError) as err:
        Simulation(scenario({"kind": "scheme", "preset": preset}, gpu=gpu))
    msg = str(err.value)
    assert dev(gpu).name in msg and f"no {dtype} tensor-core path" in msg
    assert err.value.where == "policies.quantization"


def test_fp8_runs_on_hopper_and_ada_and_int8_runs_everywhere():
    for gpu in ("H100-SXM", "L40S", "L4", "RTX-4090"):
        Simulation(scenario({"kind": "scheme", "preset": "W8A8-fp8"}, gpu=gpu))
    for gpu in GPUS:
        Simulation(scenario({"kind": "scheme", "preset": "W8A8-int8"}, gpu=gpu))


def test_an_impossible_dtype_pair_is_a_config_error_with_its_path():
    with pytest.raises(ConfigError, match="policies.quantization.*cannot feed a int8"):
        scheme(weights={"dtype": "bf16"}, activations={"dtype": "int8"})
    with pytest.raises(ConfigError, match="unknown projection"):
        scheme(weights={"overrides": {"q_proj": {"dtype": "int8"}}})
    with pytest.raises(ConfigError, match="llm_int8 needs"):
        scheme(outliers={"method": "llm_int8", "fraction": 0.01})


def test_per_projection_overrides_set_each_gemms_precision_and_the_lm_head_stays_16_bit_by_default():
    s = scheme("W4A16-marlin", weights={"overrides": {"mlp_down": {"dtype": "int8"}}})
    assert s.linear("mlp_up", "bf16", 2.0).w_bytes == 4.125 / 8
    assert s.linear("mlp_down", "bf16", 2.0).w_bytes == 8.125 / 8  # the group size is inherited
    assert s.linear("lm_head", "bf16", 2.0) is None
    s2 = scheme("W8A8-int8", weights={"overrides": {"lm_head": {"dtype": "int8"}}})
    assert s2.linear("lm_head", "bf16", 2.0).tensor_dtype == "int8"


def test_the_op_breakdown_shows_quantize_dequantize_and_kv_kernels_with_their_bytes():
    rows = breakdown(scenario({"kind": "scheme", "preset": "W4A4KV4"}), tokens=128, decode_rows=4, context=2048)
    names = {r["name"]: r for r in rows}
    assert {"kv_quant", "qkv_proj_quant", "mlp_down_quant", "attn_decode", "attn_prefill"} <= set(names)
    assert names["qkv_proj"]["precision"].startswith("int4")
    plain = {r["name"]: r for r in breakdown(scenario(), tokens=128, decode_rows=4, context=2048)}
    assert names["mlp_up"]["bytes"] < 0.3 * plain["mlp_up"]["bytes"]
    assert names["attn_decode"]["bytes"] < 0.5 * plain["attn_decode"]["bytes"]
    marlin = {r["name"]: r for r in breakdown(scenario({"kind": "scheme", "preset": "W4A16-marlin"}), 0, 1, 512)}
    assert marlin["mlp_up"]["dequant_ops"] > 0 and marlin["mlp_up"]["precision"].startswith("fp16")


def test_the_resolved_scenario_keeps_the_scheme_and_loads_again_to_the_same_one():
    sc = scenario({"kind": "scheme", "preset": "W4A16-awq", "weights": {"group_size": 64}})
    dumped = sc.dump()
    assert dumped["policies"]["quantization"]["weights"]["group_size"] == 64
    again = load_scenario(dumped)
    assert again.quantization.config == sc.quantization.config
    assert sc.quantization in sc.components()
