"""Events at equal timestamps: a request arriving exactly when an iteration ends is seen by the
scheduler planning the next iteration, on the steady-decode fast path and one iteration at a time.

The ``constant`` timing backend (every iteration 10 ms) and arrivals on a 5 ms grid make such ties
the rule rather than the exception. The expected times follow by hand from the iteration length.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.config.loader import load_scenario, resolve_component
from simulator.core import registry as reg
from simulator.runner import Simulation
from workloads.sources.base import RequestTable

D_MS = 10  # every iteration takes 10 ms
GiB = 2**30
L4_MEMORY = 24 * GiB
RESERVE = 1 * GiB
KV_PER_TOKEN = 2 * 32 * 32 * 128 * 2  # Llama-2-7B, bf16
WEIGHTS = resolve_component({"kind": "transformer", "preset": "Llama-2-7B"}, reg.MODELS, "model").config.weight_bytes()


def scenario(scheduler: dict, kv_tokens: int | None = None) -> dict:
    engine: dict = {"max_model_len": 256}
    if kv_tokens is not None:  # a tight cache, so schedulers preempt
        engine["gpu_memory_utilization"] = (WEIGHTS + RESERVE + (kv_tokens + 8) * KV_PER_TOKEN) / L4_MEMORY
    return {
        "name": "ties", "seed": 0,
        "hardware": {"device": {"kind": "gpu", "preset": "L4"},
                     "timing": {"kind": "constant", "iteration": f"{D_MS}ms"}},
        "model": {"preset": "Llama-2-7B"}, "engine": engine,
        "workload": {"kind": "synthetic", "num_requests": 1, "arrival": {"process": "poisson", "rate": "1/s"},
                     "prompt_tokens": {"dist": "fixed", "value": 16}, "output_tokens": {"dist": "fixed", "value": 1}},
        "policies": {"scheduler": scheduler},
    }


def run(sc: dict, arrival_ms: list[int], prompts: list[int], outputs: list[int], steady: bool):
    sim = Simulation(load_scenario(sc))
    sim.table = RequestTable(np.asarray(arrival_ms, dtype=np.float64) / 1e3, np.asarray(prompts, dtype=np.int64),
                             np.asarray(outputs, dtype=np.int64))
    if not steady:
        for rep in sim.cluster.replicas:
            rep.steady = False
    return sim.run(), sim


COLUMNS = ("replica", "status", "first_scheduled_s", "first_token_s", "finish_s", "generated_tokens", "preemptions")


def assert_same(fast, slow) -> None:
    for col in COLUMNS:
        np.testing.assert_array_equal(fast.requests[col], slow.requests[col], err_msg=col)
    np.testing.assert_array_equal(fast.itl_s, slow.itl_s)
    assert fast.summary["iterations"] == slow.summary["iterations"]
    assert fast.sim_time_s == slow.sim_time_s


SCHEDULERS = {
    "vllm": {"kind": "vllm"},
    "sarathi": {"kind": "sarathi", "chunk_size": 64},
    "vllm_chunked": {"kind": "vllm_chunked", "max_num_batched_tokens": 64},
    "orca": {"kind": "orca", "max_batch_size": 4},
    "static": {"kind": "static", "batch_size": 2},
    "fastgen": {"kind": "fastgen", "token_budget": 64},
    "priority": {"kind": "priority"},
}


@pytest.mark.parametrize("name", ["vllm", "sarathi", "vllm_chunked", "orca"])
def test_a_request_arriving_exactly_at_an_iteration_end_joins_the_next_iteration_on_both_paths(name):
    # request 0 arrives at 0: prefill 0-10 ms (first token at 10), decodes from 10 ms on.
    # request 1 arrives at 15 ms, in the middle of the decode iteration 10-20 ms;
    # request 2 arrives at 20 ms, exactly when that iteration ends.
    # The scheduler planning at 20 ms sees both, and all four schedulers give both a prefill in the
    # iteration 20-30 ms (small prompts, budget to spare): first tokens at 10, 30 and 30 ms.
    sc = scenario(SCHEDULERS[name])
    for steady in (True, False):
        res, _ = run(sc, [0, 15, 20], [16, 16, 16], [5, 5, 5], steady)
        np.testing.assert_allclose(res.requests["first_token_s"] * 1e3, [10, 30, 30], atol=1e-9,
                                   err_msg=f"steady={steady}")


def test_the_tie_rule_holds_when_the_arrival_ends_a_stretch_of_decodes():
    # request 0 (3 tokens) decodes 10-20 and 20-30 ms and finishes at 30 ms; request 1 arrives at
    # exactly 30 ms and is prefilled at once: its first token at 40 ms on both paths
    sc = scenario({"kind": "vllm"})
    for steady in (True, False):
        res, _ = run(sc, [0, 30], [16, 16], [3, 2], steady)
        np.testing.assert_allclose(res.requests["first_token_s"] * 1e3, [10, 40], atol=1e-9)
        np.testing.assert_allclose(res.requests["finish_s"] * 1e3, [30, 50], atol=1e-9)


@st.composite
def tie_cases(draw):
    n = draw(st.integers(2, 14))
    # gaps on a 5 ms grid against a 10 ms iteration: many arrivals fall on iteration ends (some in
    # the middle of a stretch of decodes, some when one ends), many coincide with each other
    gaps = draw(st.lists(st.sampled_from([0, 1, 2, 3, 4]), min_size=n, max_size=n))
    arrivals = np.cumsum(gaps).tolist()
    prompts = draw(st.lists(st.integers(1, 150), min_size=n, max_size=n))
    outputs = draw(st.lists(st.integers(1, 40), min_size=n, max_size=n))
    name = draw(st.sampled_from(sorted(SCHEDULERS)))
    kv = draw(st.sampled_from([None, 256, 512]))
    return name, kv, [5 * a for a in arrivals], prompts, outputs


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tie_cases())
def test_fast_path_equals_per_iteration_on_random_arrivals_with_equal_timestamps(case):
    name, kv, arrivals, prompts, outputs = case
    sc = scenario(SCHEDULERS[name], kv)
    fast, fast_sim = run(sc, arrivals, prompts, outputs, True)
    slow, _ = run(sc, arrivals, prompts, outputs, False)
    assert all(rep.steady for rep in fast_sim.cluster.replicas)
    assert_same(fast, slow)
