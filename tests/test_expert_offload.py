"""MoE expert offload: routed experts in host memory or on an SSD, a GPU cache of experts per layer,
predicted prefetch; the memory plan counts only the cache. First principles (a cache of every expert
is no offload; copies are never faster than the link), Hypothesis properties (hit rate monotone in
the cache, prediction never hurts when perfect), the errors a user gets, and the ExpertFlow figures."""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from policies.expert_caches.lfu import LfuExpertCache
from policies.expert_caches.lru import LruExpertCache
from simulator.cli import app
from simulator.config.loader import load_scenario, resolve_component
from simulator.core import registry as reg
from simulator.reproduce import evaluate, get
from simulator.runner import Simulation, memory_plan, run_scenario
from simulator.serving.expert_offload import build_expert_offload
from workloads.expert_offload import ExpertOffload, active_probability, expected_active
from workloads.llm import BatchShape
from workloads.moe import RoutingConfig

ROOT = Path(__file__).resolve().parents[1]
EXPERTFLOW = ROOT / "scenarios" / "papers" / "expertflow_mixtral8x7b_a6000.yaml"
POLICIES = {"lru": LruExpertCache.resident, "lfu": LfuExpertCache.resident}
cli = CliRunner()


def small_moe(**offload):
    """Mixtral-8x7B on one H200 (all of it fits), 16 short requests."""
    spec = {
        "hardware": {"device": {"kind": "gpu", "preset": "H200"}, "timing": {"kind": "roofline"}},
        "model": {"kind": "transformer", "preset": "Mixtral-8x7B", "routing": {"dist": "zipf", "exponent": 0.8}},
        "engine": {"max_model_len": 2048},
        "workload": {"kind": "synthetic", "num_requests": 16, "arrival": {"process": "fixed", "rate": "1000/s"},
                     "prompt_tokens": {"dist": "fixed", "value": 64}, "output_tokens": {"dist": "fixed", "value": 16}},
        "policies": {"scheduler": {"kind": "vllm", "max_num_seqs": 8}},
        "outputs": {"report": False, "chrome_trace": False, "events": False, "requests": False},
    }
    if offload:
        spec["policies"]["expert_offload"] = offload
    return load_scenario(spec)


def offload(policy="lfu", cache_experts=2, accuracy=None, experts=8, top_k=2, exponent=0.0):
    return ExpertOffload(experts, top_k, 32, 32, RoutingConfig(dist="zipf", exponent=exponent), 3.5e8,
                         cache_experts, POLICIES[policy], 25e9, 1e-5, accuracy)


# -- first principles --------------------------------------------------------------------------------

def test_a_cache_holding_every_expert_is_no_offload_same_memory_and_same_step_times():
    plain = small_moe()
    full = small_moe(kind="lru", cache_experts=8, prefetch={"accuracy": 0.5})
    a, b = memory_plan(plain), memory_plan(full)
    assert b.weight_bytes == pytest.approx(a.weight_bytes, rel=1e-12) and b.kv_blocks == a.kv_blocks
    ra, rb = run_scenario(plain).summary, run_scenario(full).summary
    assert rb["tpot_s"] == ra["tpot_s"] and rb["ttft_s"] == ra["ttft_s"] and rb["sim_time_s"] == ra["sim_time_s"]


def test_offloading_frees_gpu_memory_for_kv_and_slows_each_step_by_the_copies():
    plain, off = small_moe(), small_moe(kind="lfu", cache_experts=2)
    a, b = memory_plan(plain), memory_plan(off)
    eo = build_expert_offload(off, off.pools[0])
    assert a.weight_bytes - b.weight_bytes == pytest.approx(6 * 32 * eo.expert_bytes, rel=1e-9)
    assert b.kv_blocks > a.kv_blocks
    shape = BatchShape(prefill=(), decode_rows=4, decode_kv=4 * 100, emitting=4)
    ta, tb = Simulation(plain).timer.step(shape)[0], Simulation(off).timer.step(shape)[0]
    # no prefetch: the stall is the copies of every MoE layer's missed experts, added to the GPU time
    assert (tb - ta) / 1e12 == pytest.approx(32 * eo.fetch_s(4), rel=1e-6)


@pytest.mark.parametrize("tier", ["host", "ssd"])
def test_copies_are_never_faster_than_the_links_roofline(tier):
    sc = load_scenario(EXPERTFLOW, [f"policies.expert_offload.tier={tier}"])
    eo = build_expert_offload(sc, sc.pools[0])
    host = resolve_component({"kind": "host", "preset": "A6000-workstation"}, reg.HARDWARE, "host").config
    raw = host.pcie_bw_bytes_per_s  # PCIe 4.0 x16 line rate, one direction: no copy can beat it
    for tokens in (1, 3, 8, 64, 512):
        missed_bytes = eo.misses(tokens) * eo.expert_bytes
        assert missed_bytes > 0
        assert eo.fetch_s(tokens) >= missed_bytes / raw
        # on demand (no prefetch), a step waits for every MoE layer's copies
        assert eo.moe_layers * eo.fetch_s(tokens) >= eo.moe_layers * missed_bytes / raw


def test_expected_active_experts_follow_the_occupancy_law():
    # uniform top-k: one token picks k of E, so P(expert used by T tokens) = 1 - (1 - k/E)^T
    for tokens in (1, 2, 5, 40):
        assert expected_active(tokens, 8, 2, RoutingConfig()) == pytest.approx(8 * (1 - 0.75 ** tokens))
    p = active_probability(16, 64, 4, RoutingConfig(dist="zipf", exponent=1.0))
    assert np.all(np.diff(p) <= 1e-12) and p[0] <= 1.0  # the most popular first


# -- properties --------------------------------------------------------------------------------------

@settings(max_examples=80, deadline=None)
@given(policy=st.sampled_from(["lru", "lfu"]), experts_log=st.integers(1, 7), k=st.integers(1, 8),
       tokens=st.integers(1, 2000), exponent=st.floats(0.0, 2.0))
def test_hit_rate_never_falls_as_the_cache_grows(policy, experts_log, k, tokens, exponent):
    experts = 2 ** experts_log
    k = min(k, experts)
    rates = [offload(policy, c, experts=experts, top_k=k, exponent=exponent).hit_rate(tokens)
             for c in range(experts + 1)]
    assert rates[0] == pytest.approx(0.0, abs=1e-12) and rates[-1] == pytest.approx(1.0)
    assert all(b >= a - 1e-9 for a, b in zip(rates, rates[1:]))


@settings(max_examples=80, deadline=None)
@given(policy=st.sampled_from(["lru", "lfu"]), cache_experts=st.integers(0, 8), tokens=st.integers(1, 512),
       gpu_ms=st.floats(0.01, 500.0), exponent=st.floats(0.0, 2.0), acc=st.floats(0.0, 1.0))
def test_perfect_prediction_is_never_slower_than_none_and_more_accuracy_never_slower(policy, cache_experts, tokens,
                                                                                   gpu_ms, exponent, acc):
    gpu_s = gpu_ms / 1e3
    none = offload(policy, cache_experts, exponent=exponent).stall_s(tokens, gpu_s)
    perfect = offload(policy, cache_experts, 1.0, exponent=exponent).stall_s(tokens, gpu_s)
    some = offload(policy, cache_experts, acc, exponent=exponent).stall_s(tokens, gpu_s)
    assert perfect <= none + 1e-15  # no prediction is never faster than a perfect one
    assert perfect <= some + 1e-15 <= none + 2e-15  # any predictor lies between (wrong copies are dropped)
    # a perfect prefetch hides each layer's copies behind the previous layer's compute
    f = offload(policy, cache_experts, exponent=exponent).fetch_s(tokens)
    assert perfect == pytest.approx(32 * max(0.0, f - gpu_s / 32), abs=1e-12)


def test_the_decode_fast_path_gives_the_same_results_as_one_iteration_at_a_time():
    # with prefetch the stall depends on each iteration's GPU time, which grows with the context
    runs = []
    for steady in (True, False):
        sim = Simulation(small_moe(kind="lru", cache_experts=3, prefetch={"accuracy": 0.8}))
        for rep in sim.cluster.replicas:
            rep.steady = steady
        runs.append(sim.run())
    fast, slow = runs
    for col in ("first_token_s", "finish_s", "generated_tokens"):
        np.testing.assert_array_equal(fast.requests[col], slow.requests[col], err_msg=col)
    np.testing.assert_array_equal(fast.itl_s, slow.itl_s)
    assert fast.sim_time_s == slow.sim_time_s


def test_the_stall_is_vectorised_over_a_decode_stretch():
    eo = offload("lru", 3, 0.7)
    gpu = np.array([1e-3, 5e-3, 0.5])
    assert np.allclose(eo.stall_s(6, gpu), [eo.stall_s(6, float(g)) for g in gpu])


# -- bad input ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("setting, words", [
    ("policies.expert_offload.cache_experts=8", "exceeds"),
    ("policies.expert_offload.prefetch.accuracy=1.5", "accuracy"),
    ("policies.expert_offload.prefetch.accuracy=-0.1", "accuracy"),
])
def test_an_expert_cache_larger_than_memory_or_a_bad_accuracy_is_one_line_and_exit_2(setting, words):
    res = cli.invoke(app, ["check", str(EXPERTFLOW), "--set", setting])
    assert res.exit_code == 2, res.output
    out = res.output.strip()
    assert len(out.splitlines()) == 1 and "Traceback" not in out
    assert "policies.expert_offload" in out and words in out


def test_expert_offload_on_a_dense_model_is_an_error():
    res = cli.invoke(app, ["check", str(EXPERTFLOW), "--set", "model={kind: transformer, preset: Llama-3-8B}"])
    assert res.exit_code == 2 and "mixture-of-experts" in res.output


# -- ExpertFlow (He et al., 2024) --------------------------------------------------------------------
# Paper: "up to 93.72% GPU memory savings" and "2 to 10 times" faster than offloading baselines. The rows
# live in the reproduction registry (simulator/reproduce.py: band = the paper's figure x/ 1.5); these tests
# pin what drives each figure. `hwsim reproduce expertflow_memory_saving expertflow_vs_on_demand
# expertflow_vs_lru` prints them.

@cache
def figure(name: str):
    return evaluate(get(name))


def test_expertflow_memory_saving_is_input_bound_by_the_cache_size_and_lands_in_band():
    o = figure("expertflow_memory_saving")
    # 1 - (non-expert weights + cache) / all weights: a cache of 2 of Mixtral's 8 experts per layer keeps
    # 72 % of the weights off the GPU, below the paper's 93.72 % (which needs a smaller cache or more
    # experts per layer) but inside the x/ 1.5 band
    assert o.value == pytest.approx(0.724, abs=0.01) and o.within
    half = evaluate(get("expertflow_memory_saving"), cache_gib=10.5).value  # one expert per layer
    assert half > o.value


def test_expertflow_speedup_over_on_demand_offload_lands_in_the_band_only_at_its_low_edge():
    # vs copying each active expert when its layer runs (no cache): inside [1.33, 15] only through the
    # x/ 1.5 tolerance (the paper's lowest figure is 2x); the cache cuts copies by ~8/6 under uniform
    # routing and the prefetch hides ~1 ms of compute per layer behind ~14 ms of copies per expert
    o = figure("expertflow_vs_on_demand")
    assert o.within and o.value < 2.0, o.detail


def test_expertflow_speedup_over_an_lru_cache_is_reported_missed_and_is_what_hwsim_computes():
    o = figure("expertflow_vs_lru")
    assert o.expectation.missed and not o.within
    assert 1.0 <= o.value < 1.15, o.detail  # prediction helps a little and never hurts
