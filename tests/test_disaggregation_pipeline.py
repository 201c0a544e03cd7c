"""Pools of replicas: prefill/decode disaggregation with KV moved over a contended link, and
pipeline parallelism with virtual engines sharing the stages of one replica."""

from __future__ import annotations

import copy

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.config.loader import load_scenario
from simulator.core.errors import ConfigError
from simulator.core.events import EventKind
from simulator.results import FINISHED, REJECTED
from simulator.runner import Simulation, memory_plan

IB_NDR = {"kind": "link", "preset": "IB-NDR"}


def scenario(*, pools=None, seed=0, n=60, rate="6/s", prompt=(32, 1500), output=(1, 300), link=IB_NDR,
             scheduler=None, replicas=1, pp=1, model="Llama-2-7B", device="A100-80GB", router="least_outstanding"):
    cluster: dict = {"router": {"kind": router}}
    if pools is None:
        cluster.update(replicas=replicas, pipeline_parallel=pp)
    else:
        cluster.update(pools=pools, kv_transfer={"link": link}, decode_router={"kind": "least_outstanding"})
    return {
        "name": "pools", "seed": seed,
        "hardware": {"device": {"kind": "gpu", "preset": device}, "timing": {"kind": "roofline"}},
        "model": {"preset": model},
        "engine": {"max_model_len": 2048},
        "cluster": cluster,
        "workload": {"kind": "synthetic", "num_requests": n, "arrival": {"process": "poisson", "rate": rate},
                     "prompt_tokens": {"dist": "uniform", "low": prompt[0], "high": prompt[1]},
                     "output_tokens": {"dist": "uniform", "low": output[0], "high": output[1]}},
        "policies": {"scheduler": scheduler or {"kind": "vllm"}},
    }


def disagg(prefill=1, decode=1, **kw):
    return scenario(pools=[{"name": "p", "role": "prefill", "replicas": prefill},
                           {"name": "d", "role": "decode", "replicas": decode}], **kw)


def run(sc, steady=True):
    sim = Simulation(load_scenario(sc))
    if not steady:
        for rep in sim.cluster.replicas:
            rep.steady = False
    return sim.run(), sim


def check_disaggregated(result, sim):
    req, ev, b = result.requests, result.events, result.batches
    n = len(sim.table)
    status = req["status"]
    fin = status == FINISHED
    # every request ends exactly once, none lost between the pools
    assert np.array_equal(np.sort(req["rid"]), np.arange(n))
    assert int(fin.sum()) + int((status == REJECTED).sum()) == n
    fin_ev = ev["request"][ev["kind"] == EventKind.FINISHED]
    assert len(set(fin_ev.tolist())) == len(fin_ev) == int(fin.sum())
    np.testing.assert_array_equal(req["generated_tokens"][fin], req["output_tokens"][fin])
    # every finished request of more than one token moved its KV exactly once
    moved = ev["request"][ev["kind"] == EventKind.KV_TRANSFERRED]
    assert len(set(moved.tolist())) == len(moved)
    assert set(moved.tolist()) == set(req["rid"][fin & (req["output_tokens"] > 1)].tolist())
    # prefill replicas never decode, decode replicas never prefill a fresh request
    roles = {r.index: r.role for r in sim.cluster.replicas}
    for i, role in roles.items():
        mine = b["replica"] == i
        if role == "prefill":
            assert np.all(b["decode_rows"][mine] == 0)
    # KV never over capacity on any replica, all of it returned (prefill side after the transfer)
    assert np.all(b["kv_blocks_used"] <= b["kv_blocks_total"])
    for rep in sim.cluster.replicas:
        assert rep.kv.peak_used <= rep.kv.total_blocks
        assert rep.kv.used == 0
    # time and Little's law
    assert np.all(np.diff(ev["t_ps"]) >= 0)
    ll = result.summary["littles_law"]
    assert ll["L"] == pytest.approx(ll["lambda_W"], rel=1e-9)


def test_a_disaggregated_run_moves_every_kv_cache_once_and_loses_no_request():
    result, sim = run(disagg(prefill=2, decode=2, n=80, rate="10/s"))
    check_disaggregated(result, sim)
    assert result.summary["kv_transfer"]["count"] == int(np.sum(result.requests["output_tokens"] > 1))
    assert set(result.summary["pools"]) == {"p", "d"}


def test_the_first_token_comes_from_a_prefill_replica_and_the_rest_from_a_decode_replica():
    result, sim = run(disagg(n=30, output=(2, 50)))
    roles = {r.index: r.role for r in sim.cluster.replicas}
    for r in sim.cluster.requests:
        if r.max_new_tokens > 1:
            assert roles[r.runs[0][0]] == "prefill" and r.runs[0][2] - r.runs[0][1] == 1
            assert all(roles[rep] == "decode" for rep, _, _ in r.runs[1:])


def test_a_kv_transfer_takes_at_least_its_bytes_over_the_link_bandwidth_plus_latency():
    result, sim = run(disagg(n=20, rate="1/s", output=(2, 20)))
    link = load_scenario(disagg()).kv_link.config
    per_token = sim.cluster.kv_bytes_per_token
    for rid, start, end, nbytes in sim.cluster.transfers:
        r = sim.cluster.requests[rid]
        assert nbytes == pytest.approx(r.prompt_tokens * per_token)
        floor_ps = (nbytes / (link.bw_bytes_per_s * link.efficiency) + link.latency_s) * 1e12
        assert end - start >= floor_ps - 2


def test_a_slower_kv_link_never_finishes_requests_earlier():
    fast, _ = run(disagg(n=40, seed=3))
    slow, _ = run(disagg(n=40, seed=3, link={"kind": "link", "preset": "IB-NDR", "bw_bytes_per_s": "2GB/s"}))
    assert slow.summary["e2e_s"]["mean"] > fast.summary["e2e_s"]["mean"]
    assert slow.summary["kv_transfer"]["time_s"]["mean"] > 10 * fast.summary["kv_transfer"]["time_s"]["mean"]


@pytest.mark.parametrize("kw", [dict(prefill=1, decode=1, seed=1), dict(prefill=2, decode=1, seed=2, rate="12/s"),
                                dict(prefill=1, decode=2, seed=3, rate="9/s")])
def test_the_fast_decode_path_gives_the_same_disaggregated_run(kw):
    fast, _ = run(disagg(**kw))
    slow, _ = run(disagg(**kw), steady=False)
    for col in ("replica", "status", "first_token_s", "finish_s", "generated_tokens", "preemptions"):
        np.testing.assert_array_equal(fast.requests[col], slow.requests[col], err_msg=col)
    np.testing.assert_array_equal(fast.itl_s, slow.itl_s)
    assert fast.summary["batch_segments"] < slow.summary["batch_segments"]


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prefill=st.integers(1, 2), decode=st.integers(1, 3), seed=st.integers(0, 10**6),
       rate=st.sampled_from(["2/s", "8/s", "20/s"]), out_hi=st.sampled_from([1, 40, 400]),
       sched=st.sampled_from(["vllm", "sarathi", "orca"]))
def test_disaggregated_runs_conserve_requests_tokens_and_kv(prefill, decode, seed, rate, out_hi, sched):
    result, sim = run(disagg(prefill=prefill, decode=decode, seed=seed, rate=rate, n=40, output=(1, out_hi),
                             scheduler={"kind": sched}))
    check_disaggregated(result, sim)


def test_pools_with_a_prefill_pool_but_no_decode_pool_are_an_error_with_a_path():
    sc = scenario(pools=[{"name": "p", "role": "prefill", "replicas": 1}])
    with pytest.raises(ConfigError, match=r"^cluster: .*decode pool"):
        load_scenario(sc)
    sc = copy.deepcopy(disagg())
    sc["cluster"]["replicas"] = 2
    with pytest.raises(ConfigError, match="per pool"):
        load_scenario(sc)


def test_a_heterogeneous_pool_is_costed_with_its_own_gpu_price():
    sc = scenario(pools=[{"name": "h", "replicas": 1, "device": {"kind": "gpu", "preset": "H100-SXM"}},
                         {"name": "a", "replicas": 1}], n=40)
    result, sim = run(sc)
    s = result.summary
    h100 = load_scenario(sc).pools[0].device.config.price
    a100 = load_scenario(sc).pools[1].device.config.price
    assert s["cost_usd"] == pytest.approx((h100 + a100) * result.sim_time_s / 3600)
    assert s["gpus"] == 2


# -- pipeline parallelism ----------------------------------------------------------------------


def test_pipeline_stages_hold_a_share_of_the_weights_and_twice_the_kv_tokens():
    one = memory_plan(load_scenario(scenario(pp=1)))
    two = memory_plan(load_scenario(scenario(pp=2)))
    assert two.weight_bytes == pytest.approx(one.weight_bytes / 2)
    assert two.kv_bytes_per_token == pytest.approx(one.kv_bytes_per_token / 2)
    assert two.kv_blocks > 2 * one.kv_blocks  # halved weights free more memory as well


def test_one_request_through_a_two_stage_pipeline_sees_each_step_as_both_stages_plus_the_send():
    sc = scenario(pp=2, n=1, prompt=(100, 100), output=(50, 50))
    result, sim = run(sc)
    base, _ = run(scenario(pp=1, n=1, prompt=(100, 100), output=(50, 50)))
    link = sim.pipelines[0].link
    send = link.send_s(sim.scenario.model.config.hidden_size * 2)  # one decode token of activations
    # each decode step: two half-steps (rounded up to the ps) plus one activation send
    np.testing.assert_allclose(result.itl_s, base.itl_s + send, rtol=0, atol=2e-12)


def test_a_single_micro_batch_leaves_each_stage_idle_half_the_time_a_pipeline_bubble():
    result, sim = run(scenario(pp=2, n=1, prompt=(100, 100), output=(200, 200)))
    st_ = result.stages
    for s in (0, 1):
        mine = st_["stage"] == s
        busy = float(np.sum(st_["end_s"][mine] - st_["start_s"][mine]))
        assert busy / result.sim_time_s < 0.5
    # with many requests the two virtual engines overlap: stage 0 is busy while stage 1 works
    result, sim = run(scenario(pp=2, n=60, rate="20/s"))
    st_ = result.stages
    a = st_["stage"] == 0
    b = st_["stage"] == 1
    overlap = 0.0
    s1 = list(zip(st_["start_s"][b], st_["end_s"][b]))
    j = 0
    for s0, e0 in zip(st_["start_s"][a], st_["end_s"][a]):
        while j < len(s1) and s1[j][1] <= s0:
            j += 1
        k = j
        while k < len(s1) and s1[k][0] < e0:
            overlap += min(e0, s1[k][1]) - max(s0, s1[k][0])
            k += 1
    assert overlap > 0.2 * float(np.sum(st_["end_s"][a] - st_["start_s"][a]))


def test_pipeline_parallel_runs_conserve_tokens_and_write_stage_spans_to_the_trace(tmp_path):
    from simulator.outputs import write_results

    sc = scenario(pp=2, replicas=2, n=40)
    resolved = load_scenario(sc)
    sim = Simulation(resolved)
    result = sim.run()
    fin = result.requests["status"] == FINISHED
    np.testing.assert_array_equal(result.requests["generated_tokens"][fin], result.requests["output_tokens"][fin])
    assert result.summary["gpus"] == 4 and len(sim.cluster.replicas) == 4  # 2 replicas x 2 virtual engines
    paths = write_results(result, resolved.to_yaml(), tmp_path, report=False)
    import json

    trace = json.loads(paths["trace"].read_text())
    names = {e["args"]["name"] for e in trace["traceEvents"] if e.get("name") == "thread_name"}
    assert {"stage 0", "stage 1"} <= names
