"""Serving-framework profiles: version resolution, fusion, CUDA graphs, host time, KV sizing, ramp-up."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.config.framework import all_profiles, parse_framework, resolve_profile, version_key
from simulator.config.loader import load_scenario
from simulator.core.errors import ConfigError
from simulator.runner import Simulation, run_scenario
from workloads.llm import ALLREDUCE, GEMM, BatchShape, dense_ops, lower


def scenario(tp: int = 1, framework=None, quant: str | None = None, clients: int = 4, n: int = 8,
             timing: dict | None = None, **workload) -> dict:
    d = {"hardware": {"device": {"kind": "gpu", "preset": "H200"}},
         "model": {"kind": "transformer", "preset": "Llama-3.1-8B"},
         "cluster": {"tensor_parallel": tp},
         "engine": {"max_model_len": 4096},
         "workload": {"kind": "closed_loop", "clients": clients, "num_requests": n,
                      "prompt_tokens": {"dist": "fixed", "value": 256},
                      "output_tokens": {"dist": "fixed", "value": 32}, **workload},
         "outputs": {"report": False, "chrome_trace": False, "events": False, "requests": False}}
    if framework is not None:
        d["engine"]["framework"] = framework
    if quant:
        d["policies"] = {"quantization": {"kind": "scheme", "preset": quant}}
    if timing:
        d["hardware"]["timing"] = timing
    return d


def test_every_shipped_profile_reads_and_each_framework_has_one_default():
    profiles = all_profiles()
    assert {p.framework for p in profiles} == {"vllm", "sglang", "trtllm"}
    for fw in ("vllm", "sglang", "trtllm"):
        assert sum(p.default for p in profiles if p.framework == fw) == 1


def test_a_version_maps_to_the_newest_profile_not_newer_than_it():
    assert resolve_profile("vllm", "0.12.0").version == "0.12.0"
    assert resolve_profile("vllm", "0.18.1").version == "0.12.0"
    assert resolve_profile("sglang", "0.5.6.post2").framework == "sglang"
    assert resolve_profile("trtllm", "1.1.0rc2.post2").framework == "trtllm"
    assert version_key("0.5.6.post2") == (0, 5, 6) and version_key("1.1.0rc2") == (1, 1, 0)
    assert resolve_profile("vllm", None).default


@pytest.mark.parametrize("fw, ver, needle", [("vlm", "0.12", "unknown framework 'vlm'"),
                                             ("vllm", "0.4.0", "older than every profile"),
                                             ("sglang", "glm5-hopper", "not a release number")])
def test_unknown_frameworks_and_versions_are_errors_naming_them(fw, ver, needle):
    with pytest.raises(ConfigError, match=needle):
        resolve_profile(fw, ver)


def test_a_framework_block_overrides_the_presets_fields_and_rejects_unknown_ones():
    p = parse_framework({"preset": "sglang", "host": {"per_seq_s": "40us"}})
    assert p.host.per_seq_s == pytest.approx(40e-6) and p.host.overlap  # the rest of host kept
    with pytest.raises(ConfigError, match="engine.framework"):
        parse_framework({"preset": "sglang", "host": {"per_token": "1us"}})


def test_the_profile_supplies_the_scheduler_memory_and_timing_defaults_and_explicit_fields_win():
    s = load_scenario(scenario(framework="trtllm"))
    assert s.scheduler.kind == "orca" and s.scheduler.config.reservation == "oracle"
    assert s.spec.engine.memory_rule == "free_after_weights"
    assert s.timing.kind == "tile" and s.timing.config.cuda_graphs  # kernel times; the step timer adds launches
    d = scenario(framework="trtllm")
    d["policies"] = {"scheduler": {"kind": "vllm_chunked"}}
    d["engine"]["gpu_memory_utilization"] = 0.5
    s2 = load_scenario(d)
    assert s2.scheduler.kind == "vllm_chunked" and s2.spec.engine.gpu_memory_utilization == 0.5


def _unfused_and_fused(tp: int, fw: str, tokens: int = 512, quant=None):
    s = load_scenario(scenario(tp=tp, framework=fw, quant=quant))
    m = s.model.config
    q = Simulation(s).quant
    return dense_ops(tokens, tokens, m, tp, q), dense_ops(tokens, tokens, m, tp, q, s.framework.fusion)


@pytest.mark.parametrize("fw, tp", [("vllm", 1), ("vllm", 2), ("sglang", 4), ("trtllm", 1), ("trtllm", 8)])
def test_fusion_keeps_every_gemm_and_all_reduce_and_moves_fewer_bytes_in_fewer_kernels(fw, tp):
    unfused, fused = _unfused_and_fused(tp, fw)
    gemm = [(o.name, o.m, o.n, o.k) for o in unfused if o.kind == GEMM]
    assert gemm == [(o.name, o.m, o.n, o.k) for o in fused if o.kind == GEMM]
    assert sum(o.count for o in unfused if o.kind == ALLREDUCE) == sum(o.count for o in fused if o.kind == ALLREDUCE)
    mem = lambda ops: sum(o.bytes * o.count for o in ops if o.kind == "elementwise")  # noqa: E731
    assert mem(fused) < mem(unfused)
    assert sum(o.count for o in fused) < sum(o.count for o in unfused)


def test_trtllm_fuses_rope_into_attention_and_the_residual_norm_into_the_all_reduce():
    _, fused = _unfused_and_fused(8, "trtllm")
    names = {o.name for o in fused}
    assert "rope" not in names and "residual_add" not in names and "post_attn_norm" not in names
    assert {"attn_allreduce_add_norm", "mlp_allreduce_add_norm"} <= names
    _, fused1 = _unfused_and_fused(1, "trtllm")  # no all-reduce at tp=1: the add+norm kernel stays
    assert "add_norm" in {o.name for o in fused1}


def test_fused_activation_quantization_drops_the_quantize_kernels_of_norm_and_activation_inputs():
    # SGLang quantizes each GEMM input in its own kernel; TensorRT-LLM's plugins and vLLM 0.12's compiled graph
    # (Inductor, custom ops off) quantize in the norm / activation kernel, so only the O projection's input is left
    _, sglang = _unfused_and_fused(1, "sglang", quant="W8A8-fp8")
    assert {"qkv_proj_quant", "mlp_up_quant", "mlp_down_quant", "o_proj_quant"} <= {o.name for o in sglang}
    for fw in ("trtllm", "vllm"):
        _, fused = _unfused_and_fused(1, fw, quant="W8A8-fp8")
        assert {o.name for o in fused if o.name.endswith("_quant")} == {"o_proj_quant"}, fw


def test_lowering_with_attention_puts_attention_before_the_o_projection_with_or_without_fusion():
    s = load_scenario(scenario(framework="trtllm"))
    ops = lower(BatchShape(prefill=((128, 0),), emitting=1), s.model.config, 1, None, s.framework.fusion)
    names = [o.name for o in ops]
    assert names.index("attn_prefill") == names.index("o_proj") - 1


@settings(max_examples=40, deadline=None)
@given(st.integers(min_value=1, max_value=600))
def test_a_graphed_decode_batch_is_padded_to_the_next_captured_size(rows):
    p = resolve_profile("vllm")
    padded = p.padded_batch(rows)
    if rows > p.cuda_graphs.max_batch:
        assert padded == rows
    else:
        assert padded >= rows and padded in p.cuda_graphs.sizes
        assert all(s < rows for s in p.cuda_graphs.sizes if s < padded)


def _timer(framework, **over):
    d = scenario(framework=framework, timing={"kind": "roofline"})
    if over:
        d["engine"]["framework"] = {"preset": framework, **over}
    return Simulation(load_scenario(d)).timer


def test_an_eager_step_is_never_shorter_than_its_kernel_launches_and_a_graphed_step_pays_none():
    t = _timer("sglang")  # graphs up to 256 decode rows, eager beyond and for prefill
    L = t.model.num_layers
    launch = t.launch_s
    small = BatchShape(decode_rows=300, decode_kv=300 * 10, emitting=300)
    ops = lower(small, t.model, 1, None, t.fusion)
    ps, _ = t.step(small)
    assert ps / 1e12 >= sum(o.count for o in ops) * launch * (1 - 1e-9)
    assert sum(o.count for o in ops) > 8 * L  # dozens of kernels per layer
    graphed = BatchShape(decode_rows=8, decode_kv=80, emitting=8)
    kernels_s = t.backend.ops_s(lower(graphed, t.model, 1, None, t.fusion))
    assert t.step(graphed)[0] / 1e12 == pytest.approx(kernels_s, rel=1e-6)


@pytest.mark.parametrize("overlap", [True, False])
def test_host_time_is_added_after_the_gpu_or_overlapped_with_it(overlap):
    host = {"per_seq_s": "100us", "step_s": "1ms", "overlap": overlap}
    t0 = _timer("vllm", host={"per_seq_s": "0s", "step_s": "0s"})
    t1 = _timer("vllm", host=host)
    shape = BatchShape(decode_rows=64, decode_kv=64 * 100, emitting=64)
    gpu = t0.step(shape)[0] / 1e12
    hostt = 1e-3 + 64 * 100e-6
    want = max(gpu, hostt) if overlap else gpu + hostt
    assert t1.step(shape)[0] / 1e12 == pytest.approx(want, rel=1e-6)
    seg, _ = t1.decode_segment(64, 64 * 100, 3)  # the fast path agrees with one step at a time
    assert seg[0] / 1e12 == pytest.approx(want, rel=1e-6)


def test_trtllm_sizes_the_kv_cache_as_a_share_of_the_memory_left_after_the_weights():
    from simulator.runner import memory_plan

    s = load_scenario(scenario(framework="trtllm"))
    mem = memory_plan(s)
    dev = s.device.config
    free = dev.memory_bytes - dev.extra_memory_bytes - mem.weight_bytes - mem.activation_bytes
    assert mem.kv_bytes == pytest.approx(0.9 * free, rel=1e-3)
    v = memory_plan(load_scenario(scenario(framework="vllm")))
    assert v.kv_bytes == pytest.approx(0.9 * dev.memory_bytes - dev.extra_memory_bytes - v.weight_bytes
                                       - v.activation_bytes, rel=1e-3)


def test_ramp_up_spreads_the_clients_first_requests_evenly():
    res = run_scenario(load_scenario(scenario(clients=4, n=4, ramp_up="0.1s", framework="vllm")))
    arrivals = np.sort(res.requests["arrival_s"])
    assert np.nanmin(res.requests["e2e_s"]) > 0.1  # every request outlasts the ramp: one per client
    assert arrivals == pytest.approx([0.0, 0.025, 0.05, 0.075])


def test_a_closed_loop_under_a_framework_obeys_littles_law():
    res = run_scenario(load_scenario(scenario(clients=8, n=200, framework="sglang")))
    s = res.summary
    # clients are always either waiting or being served: mean in system = clients
    assert s["throughput_rps"] * s["e2e_s"]["mean"] == pytest.approx(8, rel=0.05)


def test_the_frontend_latency_adds_exactly_to_a_lone_clients_ttft_and_nothing_to_its_tpot():
    def run(request_s: str):
        d = scenario(clients=1, n=3, framework={"preset": "vllm", "host": {"request_s": request_s}})
        return run_scenario(load_scenario(d)).summary

    base, slow = run("0s"), run("20ms")
    assert slow["ttft_s"]["mean"] - base["ttft_s"]["mean"] == pytest.approx(0.020, abs=1e-9)
    assert slow["tpot_s"]["mean"] == pytest.approx(base["tpot_s"]["mean"], rel=1e-12)
