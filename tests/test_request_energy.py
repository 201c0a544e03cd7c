"""Energy per request: each step's dynamic joules shared among the requests in it by tokens processed
(simulator/serving/request_energy.py), summarised as a distribution (simulator/energy_summary.py).

First principles: the token-share rule on one step; a request served alone is charged every step it
ran. Conservation: summed over every request the attributed joules are the run's dynamic energy, and
attributed + idle + transfer = total (plain, chunked with prefix caching and preemptions,
disaggregated with KV hand-off, speculative decoding, streaming metrics). Property: on random runs
conservation holds and the steady-decode fast path attributes the same joules to every request as
iterating one step at a time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_serving_invariants import run, scenario

from simulator.config.loader import load_scenario
from simulator.core.request import Request
from simulator.results import FINISHED
from simulator.runner import run_scenario
from simulator.serving.request_energy import attribute_step, attribute_stretch, stretch_share

ROOT = Path(__file__).resolve().parents[1]
REL = 1e-9  # float summation order only


def conserved(s: dict, req: dict) -> None:
    """Attributed joules: summed over every request = dynamic energy; with idle and transfer = total;
    the distribution over finished measured requests is ordered and its mean is theirs."""
    e = req["energy_j"]
    assert np.all(e >= 0)
    assert s["energy_dynamic_j"] > 0
    assert float(e.sum()) == pytest.approx(s["energy_dynamic_j"], rel=REL)
    assert s["energy_attributed_j"] == pytest.approx(s["energy_dynamic_j"], rel=REL)
    assert s["energy_attributed_j"] + s["energy_idle_j"] + s["energy_transfer_j"] == pytest.approx(s["energy_j"],
                                                                                                  rel=REL)
    d = s["energy_request_j"]
    fin = (req["status"] == FINISHED) & req["measured"]
    assert d["count"] == int(fin.sum()) > 0
    assert 0 < d["p50"] <= d["p90"] <= d["p99"] <= d["max"]
    assert d["mean"] == pytest.approx(float(e[fin].mean()), rel=REL)


def test_one_step_is_shared_by_tokens_processed_and_padding_gets_none():
    a, b, c, d = (Request(i, 0, 100, 10) for i in range(4))
    attribute_step(606.0, [(a, 300), (b, 200)], [c, d])  # 502 tokens: 1.2071... J each
    per = 606.0 / 502
    assert (a.energy_j, b.energy_j, c.energy_j, d.energy_j) == pytest.approx((300 * per, 200 * per, per, per))
    assert a.energy_j + b.energy_j + c.energy_j + d.energy_j == pytest.approx(606.0)
    e = Request(4, 0, 100, 10)
    attribute_step(10.0, [], [c], [(e, 4, 5, 700)])  # a speculative row verifies 5 tokens
    assert e.energy_j == pytest.approx(10.0 * 5 / 6) and c.energy_j == pytest.approx(per + 10.0 / 6)
    attribute_stretch(3.0, 4, [a, b, c])  # a stretch's 3.0 J per device (1 + 2 of its steps), x 4 devices, 3 rows
    assert a.energy_j == pytest.approx(300 * per + 4.0)
    assert stretch_share(3.0, 4, 3) == 4.0 and stretch_share(0.0, 4, 3) == 0.0 and stretch_share(3.0, 4, 0) == 0.0
    attribute_stretch(0.0, 4, [a])  # no energy model: nothing
    assert a.energy_j == pytest.approx(300 * per + 4.0)


def test_a_request_served_alone_is_charged_every_step_it_ran_on_all_its_devices():
    sc = scenario(scheduler={"kind": "static", "batch_size": 1, "reservation": "oracle"}, seed=5, n=8,
                  prompt=(16, 600), output=(1, 200), kv_tokens=None)
    sc["cluster"]["tensor_parallel"] = 2
    res, sim = run(sc)
    b, req = res.batches, res.requests
    assert sim.cluster.replicas[0].devices == 2
    for i in range(len(req["rid"])):
        t0, t1 = req["first_scheduled_s"][i] * 1e12, req["finish_s"][i] * 1e12
        mine = (b["start_ps"] >= t0 - 1) & (b["end_ps"] <= t1 + 1)
        assert req["energy_j"][i] == pytest.approx(2 * float(b["energy_j"][mine].sum()), rel=REL)
    conserved(res.summary, req)


def test_chunked_prefill_with_prefix_cache_and_preemptions_conserves_energy():
    sc = scenario(scheduler={"kind": "vllm_chunked"}, kv_tokens=3072, seed=13381)
    sc["workload"] = {"kind": "shared_prefix", "num_requests": 40, "arrival": {"process": "poisson", "rate": "20/s"},
                      "num_prefixes": 3, "popularity": 1.0,
                      "prefix_tokens": {"dist": "uniform", "low": 200, "high": 900},
                      "suffix_tokens": {"dist": "uniform", "low": 10, "high": 200},
                      "output_tokens": {"dist": "uniform", "low": 1, "high": 200}}
    sc["policies"]["kv_cache"] = {"kind": "prefix"}
    res, _ = run(sc)
    assert res.summary["preemptions"] > 0
    conserved(res.summary, res.requests)
    # more tokens processed, more joules: the longest request's share is above the shortest's
    req = res.requests
    work = req["prompt_tokens"] + req["generated_tokens"]
    assert req["energy_j"][np.argmax(work)] > req["energy_j"][np.argmin(work)]


@pytest.mark.parametrize("name", ["disaggregated.yaml", "policy_speculation.yaml"])
def test_disaggregated_and_speculative_runs_conserve_energy(name):
    res = run_scenario(load_scenario(ROOT / "scenarios" / name, ["workload.num_requests=24", "run.warmup_requests=0"]))
    s = res.summary
    if name.startswith("disagg"):
        assert s["energy_transfer_j"] > 0  # KV hand-off: transfer joules stay unattributed
    conserved(s, res.requests)


def test_streaming_metrics_keep_the_attributed_sum_and_the_distribution_within_the_sketch_error():
    import simulator.metrics_stream as ms
    from simulator.sketch import RELATIVE_ERROR

    base = ROOT / "scenarios" / "multi_replica.yaml"
    over = ["workload.num_requests=300", "run.warmup_requests=0"]
    exact = run_scenario(load_scenario(base, over)).summary
    mp = pytest.MonkeyPatch()
    mp.setattr(ms, "CHUNK", 37)  # many flushes
    try:
        stream = run_scenario(load_scenario(base, [*over, "run.metrics=streaming"])).summary
    finally:
        mp.undo()
    assert stream["metrics"]["mode"] == "streaming"
    assert stream["energy_attributed_j"] == pytest.approx(exact["energy_attributed_j"], rel=REL)
    a, b = exact["energy_request_j"], stream["energy_request_j"]
    assert a["count"] == b["count"] and b["mean"] == pytest.approx(a["mean"], rel=REL)
    for q in ("p50", "p90", "p99"):
        assert b[q] == pytest.approx(a[q], rel=2 * RELATIVE_ERROR)


def test_the_report_and_the_cli_summary_show_the_per_request_distribution(capsys):
    from simulator.cli import print_summary
    from simulator.dashboard import fmt_value, render_report

    res = run_scenario(load_scenario(ROOT / "scenarios" / "quickstart.yaml",
                                     ["workload.num_requests=20", "run.warmup_requests=0"]))
    d = res.summary["energy_request_j"]
    assert "Step energy per request (token share)" in render_report(res)
    assert fmt_value(d, "J") in render_report(res)  # p50 · p90 · p99
    print_summary(res, None)
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("energy per request"))
    assert f"p90 {d['p90']:.3g}" in line and f"mean {d['mean']:.3g} J" in line


SCHEDS = st.sampled_from([{"kind": "vllm"}, {"kind": "vllm_chunked"}, {"kind": "sarathi"},
                          {"kind": "orca", "max_batch_size": 8, "reservation": "oracle"},
                          {"kind": "static", "batch_size": 4, "reservation": "oracle", "pad_finished": True}])


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sched=SCHEDS, seed=st.integers(0, 2**16), replicas=st.integers(1, 2), tp=st.sampled_from([1, 2]),
       kv=st.sampled_from([2048, 4096]), rate=st.sampled_from([2, 8, 30]))
def test_random_runs_conserve_energy_and_the_fast_path_attributes_the_same_joules(sched, seed, replicas, tp, kv,
                                                                                     rate):
    sc = scenario(scheduler=sched, replicas=replicas, seed=seed, n=25, arrival={"process": "poisson",
                                                                                 "rate": f"{rate}/s"},
                  prompt=(16, 1024), output=(1, 300), kv_tokens=kv)
    sc["cluster"]["tensor_parallel"] = tp
    fast, _ = run(sc, steady=True)
    slow, _ = run(sc, steady=False)
    for res in (fast, slow):
        if res.summary["requests_finished"]:
            conserved(res.summary, res.requests)
    np.testing.assert_allclose(fast.requests["energy_j"], slow.requests["energy_j"], rtol=1e-9)


@pytest.mark.parametrize("steady", [False, True])
@pytest.mark.parametrize("max_time", ["3.73s", "5.37s"])
def test_a_run_stopped_by_max_time_mid_step_attributes_only_the_steps_it_recorded(steady, max_time):
    # the step (or stretch) in flight when run.max_time stops the clock has no batch record, so none of its
    # joules are in the dynamic energy: no request is charged for it either
    sc = scenario(scheduler={"kind": "vllm_chunked"}, seed=7, n=60, arrival={"process": "poisson", "rate": "40/s"},
                  prompt=(64, 1024), output=(1, 300), kv_tokens=None)
    sc["run"] = {"max_time": max_time, "warmup_requests": 0}
    res, sim = run(sc, steady=steady)
    s = res.summary
    assert s["requests_unfinished"] > 0 and s["requests_finished"] > 0
    assert sim.env.now > int(res.batches["end_ps"].max())  # the clock stopped inside a step
    conserved(s, res.requests)
