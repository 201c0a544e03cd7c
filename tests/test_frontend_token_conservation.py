"""The frontend relays every token the engine emits exactly once (simulator/serving/frontend.py):
its output work is ``output_token_s`` x the tokens generated, whatever path emitted them (prefill's
first token, decode rows, decode stretches run as one, speculative rows verifying several)."""

from __future__ import annotations

import pytest

from simulator.config.loader import load_scenario
from simulator.results import FINISHED
from simulator.runner import Simulation

PER_TOKEN_PS = 10**6  # 1 us per output token: a whole number of picoseconds per token, so no rounding
NO_HOST = {"step_s": "0s", "per_seq_s": "0s", "request_s": "0s"}


def _scenario(speculation: dict | None) -> dict:
    policies = {"scheduler": {"kind": "vllm", "block_size": 16, "max_num_seqs": 64, "max_num_batched_tokens": 2048}}
    if speculation is not None:
        policies["speculation"] = speculation
    return {
        "name": "frontend-tokens", "seed": 5,
        "hardware": {"device": {"kind": "gpu", "preset": "H100-SXM"}, "timing": {"kind": "roofline"}},
        "model": {"preset": "Llama-3.1-8B"},
        "engine": {"max_model_len": 4096, "framework": {
            "preset": "sglang", "host": NO_HOST,
            "frontend": {"processes": 1, "request_s": "0s", "prompt_token_s": "0s", "output_token_s": "1us"}}},
        "workload": {"kind": "synthetic", "num_requests": 40, "arrival": {"process": "poisson", "rate": "20/s"},
                     "prompt_tokens": {"dist": "lognormal", "median": 300, "sigma": 0.6, "min": 16, "max": 1500},
                     "output_tokens": {"dist": "lognormal", "median": 60, "sigma": 0.6, "min": 8, "max": 300}},
        "policies": policies,
        "run": {"warmup_requests": 0},
    }


SPECULATION = {"kind": "draft_model", "draft": "Llama-3.2-1B", "num_speculative_tokens": 4,
               "acceptance": {"alpha": 0.8}, "length": {"kind": "fixed"}}


@pytest.mark.parametrize("speculation", [None, SPECULATION], ids=["plain", "speculative"])
def test_the_frontend_relays_each_generated_token_once(speculation):
    sim = Simulation(load_scenario(_scenario(speculation)))
    result = sim.run()
    tokens = int(result.requests["generated_tokens"].sum())
    assert (result.requests["status"] == FINISHED).all()
    assert tokens == int(result.requests["output_tokens"].sum())
    if speculation is not None:  # the rows did verify several tokens at once
        assert sim.cluster.replicas[0].spec.emitted > sim.cluster.replicas[0].spec.rows
    assert sim.cluster.frontend.busy_ps == PER_TOKEN_PS * tokens


@pytest.mark.parametrize("case", ["disaggregated", "preempted"])
def test_the_frontend_relays_each_generated_token_once_across_replicas_and_preemption(case):
    """Disaggregated: the prefill replica emits the first token and the decode replica the rest, one
    frontend relays both (and takes no process per decode replica). Preempted: a request recomputed
    after losing its KV emits no token twice."""
    sc = _scenario(None)
    if case == "disaggregated":
        sc["cluster"] = {"pools": [{"name": "p", "role": "prefill"}, {"name": "d", "role": "decode", "replicas": 2}],
                         "kv_transfer": {"link": {"kind": "link", "preset": "IB-HDR"}}}
    else:
        sc["engine"]["framework"]["gpu_memory_utilization"] = 0.21  # ~6k tokens of KV for ~40 requests in flight
        sc["workload"]["arrival"]["rate"] = "200/s"
    sim = Simulation(load_scenario(sc))
    result = sim.run()
    tokens = int(result.requests["generated_tokens"].sum())
    assert (result.requests["status"] == FINISHED).all()
    assert tokens == int(result.requests["output_tokens"].sum())
    if case == "preempted":
        assert result.summary["preemptions"] > 0
    else:
        assert len(sim.cluster.frontend.free_ps) == 1  # one serving instance takes the arrivals
    assert sim.cluster.frontend.busy_ps == PER_TOKEN_PS * tokens
