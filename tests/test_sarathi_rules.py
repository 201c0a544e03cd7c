"""The decode block check and preemption order of the vLLM v0 and Sarathi-Serve schedulers.

Both reference schedulers walk the running requests and give each decode its slot only when the
KV cache has a free block at that request's turn (vLLM v0 ``can_append_slots``, Sarathi-Serve
``can_append_slot``), whether or not the new token opens a block; while there is none they
preempt the last request not yet walked. vLLM v0 walks in admission order, Sarathi-Serve sorts by
arrival first, so its victims are the latest-arrived requests. The plans below are derived by
hand from those rules; the Hypothesis properties check the rules on random batches and that the
steady-decode fast path still reproduces one-iteration-at-a-time runs when the cache is tight.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from policies.api import KvView, SchedulerView
from simulator.config.loader import load_scenario, resolve_component
from simulator.core import registry as reg
from simulator.core.request import RUNNING, WAITING, Request
from simulator.runner import Simulation

S = 10**12  # picoseconds per second
BS = 16


def sched(kind: str, **cfg):
    entry = reg.SCHEDULERS.get(kind)
    return entry.cls(entry.config(**cfg))


def decoding(rid: int, arrival_s: float, cached: int, blocks: int, admitted: int = 0) -> Request:
    """A running request past its prefill holding ``cached`` tokens in ``blocks`` blocks; its next
    token needs a new block iff cached == blocks x 16."""
    prompt = max(1, cached - 3)
    r = Request(rid, int(arrival_s * S), prompt, 1000)
    r.num_computed, r.num_generated, r.kv_blocks = cached, cached - prompt + 1, blocks
    r.state = RUNNING
    r.first_scheduled_ps = admitted
    return r


def waiting(rid: int, prompt: int, arrival_s: float = 10.0) -> Request:
    r = Request(rid, int(arrival_s * S), prompt, 10)
    r.state = WAITING
    return r


def view(running=(), waiting_=(), free: int = 100, total: int = 100) -> SchedulerView:
    return SchedulerView(0, 0, tuple(waiting_), tuple(running), KvView(BS, total, free), 4096)


# ------------------------------------------------------------------------------------------------
# Sarathi-Serve


def test_sarathi_preempts_the_latest_arrived_request_not_the_latest_admitted():
    # admission order X, Z, Y (Y arrived before Z but was preempted and re-admitted after it);
    # all three need a new block and 1 is free. By arrival: X takes the block; at Y's turn none
    # is free, so Z (the latest arrival) is preempted, giving back its 3 blocks; Y decodes.
    x, y, z = decoding(0, 0.0, 32, 2), decoding(1, 1.0, 48, 3), decoding(2, 2.0, 48, 3)
    plan = sched("sarathi", chunk_size=64, watermark=0.0).plan(view(running=[x, z, y], free=1))
    assert plan.preempt == (2,)
    assert sorted(plan.decode) == [0, 1]


def test_sarathi_wants_a_free_block_at_every_turn_even_when_no_new_block_is_needed():
    # A and B each have room in their last block, but no block is free: at A's turn Sarathi-Serve's
    # can_append_slot fails, so B (arrived later) is preempted and A decodes
    a, b = decoding(0, 0.0, 20, 2), decoding(1, 1.0, 20, 2)
    plan = sched("sarathi", chunk_size=64, watermark=0.0).plan(view(running=[a, b], free=0))
    assert plan.preempt == (1,) and plan.decode == (0,)
    # one free block is enough for both: neither opens a block
    plan = sched("sarathi", chunk_size=64, watermark=0.0).plan(view(running=[a, b], free=1))
    assert plan.preempt == () and plan.decode == (0, 1)


def test_sarathi_preempts_the_request_itself_when_nothing_later_is_left():
    # A (arrived first) takes the one free block; at B's turn none is free and nothing follows
    # B, so B itself is preempted
    a, b = decoding(0, 0.0, 32, 2), decoding(1, 1.0, 20, 2)
    plan = sched("sarathi", chunk_size=64, watermark=0.0).plan(view(running=[b, a], free=1))
    assert plan.preempt == (1,) and plan.decode == (0,)


def test_a_request_alone_whose_next_token_fits_is_not_preempted_by_an_empty_cache():
    a = decoding(0, 0.0, 20, 2)
    for kind in ("sarathi", "vllm"):
        plan = sched(kind).plan(view(running=[a], free=0))
        assert plan.preempt == () and plan.decode == (0,), kind
    # ... but one that needs a block it cannot get is
    full = decoding(0, 0.0, 32, 2)
    assert sched("sarathi").plan(view(running=[full], free=0)).preempt == (0,)


def test_sarathi_admits_when_nothing_was_preempted_and_the_head_of_the_queue_fits():
    # budget 64: one decode, then the waiting request's first chunk of 63 tokens (whole prompt
    # of 100 tokens = 7 blocks allocated at admission; 10 free, watermark 0)
    a = decoding(0, 0.0, 20, 2)
    plan = sched("sarathi", chunk_size=64, watermark=0.0).plan(view(running=[a], waiting_=[waiting(5, 100)],
                                                                    free=10))
    assert plan.decode == (0,) and [(c.rid, c.tokens) for c in plan.prefill] == [(5, 63)]


def test_after_a_preemption_the_victim_heads_the_queue_and_nothing_is_admitted():
    # B is preempted (no free block at A's turn); the victim goes back to the front of the queue
    # needing at least the 2 blocks it gave back, while only 2 are free: admission stops there,
    # and the small request behind it waits
    a, b = decoding(0, 0.0, 20, 2), decoding(1, 1.0, 20, 2)
    plan = sched("sarathi", chunk_size=64, watermark=0.0).plan(view(running=[a, b], waiting_=[waiting(5, 4)],
                                                                    free=0))
    assert plan.preempt == (1,) and plan.prefill == ()


# ------------------------------------------------------------------------------------------------
# vLLM v0


def test_vllm_v0_preempts_when_no_block_is_free_at_a_request_s_turn():
    # A and B have room in their blocks but none is free: vLLM v0's can_append_slots fails at
    # A's turn (fewer free blocks than A's one sequence), so the newest admitted (B) is preempted
    a, b = decoding(0, 0.0, 20, 2, admitted=1), decoding(1, 0.0, 20, 2, admitted=2)
    plan = sched("vllm").plan(view(running=[a, b], free=0))
    assert plan.preempt == (1,) and plan.decode == (0,)


def test_vllm_v0_checks_in_admission_order_so_the_last_request_can_preempt_itself():
    # A opens a block and takes the only free one; at B's turn none is left and no request
    # follows B: B preempts itself, although its own next token would fit its blocks
    a, b = decoding(0, 0.0, 32, 2), decoding(1, 0.0, 20, 2)
    plan = sched("vllm").plan(view(running=[a, b], free=1))
    assert plan.preempt == (1,) and plan.decode == (0,)
    # with 2 free both decode (a block is free at each turn)
    plan = sched("vllm").plan(view(running=[a, b], free=2))
    assert plan.preempt == () and plan.decode == (0, 1)


# ------------------------------------------------------------------------------------------------
# properties on random batches


@st.composite
def batches(draw):
    n = draw(st.integers(1, 12))
    arrivals = draw(st.permutations(range(n)))  # admission order != arrival order
    running = []
    for i in range(n):
        blocks = draw(st.integers(1, 6))
        cached = draw(st.integers(blocks * BS - BS + 1, blocks * BS))  # == blocks x 16: needs a block
        running.append(decoding(i, float(arrivals[i]), cached, blocks))
    return running, draw(st.integers(0, n + 2))


@settings(max_examples=200, deadline=None)
@given(batches())
def test_sarathi_victims_are_the_latest_arrivals_and_every_kept_decode_had_a_free_block(case):
    running, free = case
    plan = sched("sarathi", chunk_size=4096, watermark=0.0).plan(view(running=running, free=free))
    by_arrival = sorted(running, key=lambda r: r.arrival_ps)
    k = len(plan.preempt)
    # the victims are a suffix of the arrival order, latest first
    assert list(plan.preempt) == [r.rid for r in reversed(by_arrival[len(by_arrival) - k:])]
    assert sorted(plan.decode) == sorted(r.rid for r in by_arrival[:len(by_arrival) - k])
    # the rule holds on the outcome: victims give their blocks back before later turns
    kept = [r for r in by_arrival if r.rid not in set(plan.preempt)]
    need = sum(1 for r in kept if r.num_computed >= r.kv_blocks * BS)
    assert need <= free + sum(r.kv_blocks for r in running if r.rid in set(plan.preempt))
    if k:  # preempting one request fewer would have left some turn without a free block
        fewer = by_arrival[:len(by_arrival) - k + 1]
        f = free + sum(r.kv_blocks for r in by_arrival[len(by_arrival) - k + 1:])
        ok = True
        for r in fewer:
            if f < 1 and not (len(fewer) == 1 and r.num_computed < r.kv_blocks * BS):
                ok = False
                break
            f -= 1 if r.num_computed >= r.kv_blocks * BS else 0
        assert not ok


@settings(max_examples=200, deadline=None)
@given(batches())
def test_vllm_v0_victims_are_the_latest_admitted_and_every_kept_decode_had_a_free_block(case):
    running, free = case
    plan = sched("vllm").plan(view(running=running, free=free))
    k = len(plan.preempt)
    assert list(plan.preempt) == [r.rid for r in reversed(running[len(running) - k:])]
    assert plan.decode == tuple(r.rid for r in running[:len(running) - k])
    kept = running[:len(running) - k]
    f = free + sum(r.kv_blocks for r in running[len(running) - k:])
    for r in kept:  # each kept decode found a free block at its turn (or is alone and fits)
        assert f >= 1 or (len(kept) == 1 and r.num_computed < r.kv_blocks * BS)
        f -= 1 if r.num_computed >= r.kv_blocks * BS else 0
        assert f >= 0


# ------------------------------------------------------------------------------------------------
# the fast path keeps reproducing per-iteration runs under the new rule


GiB = 2**30
KV_PER_TOKEN = 2 * 32 * 32 * 128 * 2  # Llama-2-7B, bf16


def tight_scenario(kind: str, seed: int, kv_tokens: int) -> dict:
    """Llama-2-7B on an L4 (roofline timing) with the KV cache cut to ``kv_tokens`` tokens."""
    weights = resolve_component({"kind": "transformer", "preset": "Llama-2-7B"}, reg.MODELS,
                                "model").config.weight_bytes()
    util = (weights + 1 * GiB + (kv_tokens + 8) * KV_PER_TOKEN) / (24 * GiB)
    sched_cfg = {"kind": kind} if kind == "vllm" else {"kind": kind, "chunk_size": 256}
    return {
        "name": "tight", "seed": seed,
        "hardware": {"device": {"kind": "gpu", "preset": "L4"}, "timing": {"kind": "roofline"}},
        "model": {"preset": "Llama-2-7B"},
        "engine": {"max_model_len": 2048, "gpu_memory_utilization": util},
        "workload": {"kind": "synthetic", "num_requests": 30, "arrival": {"process": "poisson", "rate": "6/s"},
                     "prompt_tokens": {"dist": "uniform", "low": 100, "high": 900},
                     "output_tokens": {"dist": "uniform", "low": 50, "high": 400}},
        "policies": {"scheduler": sched_cfg},
    }


def run(sc: dict, steady: bool):
    sim = Simulation(load_scenario(sc))
    if not steady:
        for rep in sim.cluster.replicas:
            rep.steady = False
    return sim.run(), sim


COLUMNS = ("replica", "status", "first_scheduled_s", "first_token_s", "finish_s", "generated_tokens", "preemptions")


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(["vllm", "sarathi"]), st.integers(0, 2**16), st.sampled_from([2048, 2560, 3072]))
def test_fast_path_equals_per_iteration_with_a_tight_cache_under_the_free_block_rule(kind, seed, kv_tokens):
    sc = tight_scenario(kind, seed, kv_tokens)
    fast, sim = run(sc, steady=True)
    slow, _ = run(sc, steady=False)
    assert all(rep.steady for rep in sim.cluster.replicas)
    for col in COLUMNS:
        np.testing.assert_array_equal(fast.requests[col], slow.requests[col], err_msg=col)
    np.testing.assert_array_equal(fast.itl_s, slow.itl_s)
    assert fast.summary["iterations"] == slow.summary["iterations"]
    assert fast.sim_time_s == slow.sim_time_s


def test_the_tight_cache_runs_do_preempt_and_take_the_fast_path():
    for kind in ("vllm", "sarathi"):
        fast, _ = run(tight_scenario(kind, 1, 2048), steady=True)
        slow, _ = run(tight_scenario(kind, 1, 2048), steady=False)
        assert fast.summary["preemptions"] > 0, kind
        assert fast.summary["batch_segments"] < slow.summary["batch_segments"], kind
