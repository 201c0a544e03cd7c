"""Schedulers and routers: hand-derived plans for small cases, Hypothesis runs of the new
schedulers (budget, conservation, KV capacity), queueing sanity across replica counts, routers,
and the PolicyError checks the framework applies to a test-defined scheduler run end to end.

The plug-in classes at the bottom are named by ``f"{__name__}:Class"`` so the registry imports
this very module (see tests/test_plugins.py for why that works under pytest).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import Field

from policies.api import (
    BatchPlan,
    ClusterView,
    KvView,
    PrefillChunk,
    ReplicaLoad,
    SchedulerView,
    StrictConfig,
)
from simulator.config.loader import load_scenario
from simulator.core import registry as reg
from simulator.core.errors import PolicyError
from simulator.core.events import EventKind
from simulator.core.request import RUNNING, WAITING, Request
from simulator.results import FINISHED, REJECTED
from simulator.runner import run_scenario

S = 10**12  # picoseconds per second


def sched(kind: str, **cfg):
    entry = reg.SCHEDULERS.get(kind)
    return entry.cls(entry.config(**cfg))


def req(rid: int, prompt: int, out: int = 10, *, arrival_s: float = 0.0, computed: int = 0, generated: int = 0,
        blocks: int = 0, running: bool = False, prefix: int = -1, session: int = -1) -> Request:
    r = Request(rid, int(arrival_s * S), prompt, out, session_id=session, prefix_id=prefix)
    r.num_computed, r.num_generated, r.kv_blocks = computed, generated, blocks
    r.state = RUNNING if running else WAITING
    if running:
        r.first_scheduled_ps = rid
    return r


def decoding(rid: int, prompt: int, generated: int, blocks: int, out: int = 100, **kw) -> Request:
    """A running request in its decode phase: num_computed = prompt + generated - 1."""
    return req(rid, prompt, out, computed=prompt + generated - 1, generated=generated, blocks=blocks,
               running=True, **kw)


def view(waiting=(), running=(), free: int = 100, total: int = 100, bs: int = 16, max_len: int = 4096,
         now_s: float = 0.0) -> SchedulerView:
    return SchedulerView(int(now_s * S), 0, tuple(waiting), tuple(running), KvView(bs, total, free), max_len)


def chunks(plan: BatchPlan) -> list[tuple[int, int]]:
    return [(c.rid, c.tokens) for c in plan.prefill]


# -------------------------------------------------------------------------------------------
# vllm (v0, prefill-first), orca, static


def test_vllm_admits_waiting_prompts_whole_in_a_prefill_only_batch_then_decodes_everyone():
    s = sched("vllm", watermark=0.0)
    # A(20) and B(30) wait, nothing runs: one prefill-only batch with both whole prompts.
    plan = s.plan(view(waiting=[req(0, 20), req(1, 30)]))
    assert chunks(plan) == [(0, 20), (1, 30)] and plan.decode == ()
    # Nobody waits: one decode step for each running request; A has room in its 2 blocks,
    # B (30 cached of 32) too, so no preemption even with one block free.
    plan = s.plan(view(running=[decoding(0, 20, 1, 2), decoding(1, 30, 1, 2)], free=1))
    assert plan.decode == (0, 1) and plan.preempt == ()


def test_vllm_preempts_the_newest_request_when_decodes_need_more_blocks_than_are_free():
    s = sched("vllm")
    # A: 32 cached in 2 blocks, B: 48 cached in 3 blocks; both need a new block, 1 is free:
    # B (admitted last) is preempted, A decodes.
    plan = s.plan(view(running=[decoding(0, 20, 13, 2), decoding(1, 40, 9, 3)], free=1))
    assert plan.preempt == (1,) and plan.decode == (0,)


def test_orca_mixes_whole_prompts_into_the_decode_batch_and_reserves_max_len():
    s = sched("orca")
    # max_len 64 -> a reservation of 64 tokens = 4 blocks. A decodes; B (10 tokens) fits in 4 free.
    plan = s.plan(view(waiting=[req(1, 10)], running=[decoding(0, 20, 1, 4)], free=4, max_len=64))
    assert plan.decode == (0,) and plan.prefill == (PrefillChunk(1, 10, 64),)
    # With 3 free blocks B's reservation does not fit: A decodes alone.
    plan = s.plan(view(waiting=[req(1, 10)], running=[decoding(0, 20, 1, 4)], free=3, max_len=64))
    assert plan.decode == (0,) and plan.prefill == ()


def test_static_batching_waits_for_the_whole_batch_and_pads_finished_rows():
    s = sched("static", batch_size=2)
    # Batch 1 = A, B (C waits for the next batch even though the GPU has room).
    plan = s.plan(view(waiting=[req(0, 5, 3), req(1, 7, 1), req(2, 4)], max_len=64))
    assert chunks(plan) == [(0, 5), (1, 7)]
    # B finished after its prefill; A decodes with one padding row; C still waits.
    plan = s.plan(view(waiting=[req(2, 4)], running=[decoding(0, 5, 1, 4)], max_len=64))
    assert plan.decode == (0,) and plan.padding_rows == 1 and plan.prefill == ()
    # The batch is empty: C forms the next one.
    assert chunks(s.plan(view(waiting=[req(2, 4)], max_len=64))) == [(2, 4)]


# -------------------------------------------------------------------------------------------
# sarathi


def test_sarathi_puts_decodes_first_then_chunks_prompts_into_the_rest_of_the_budget():
    s = sched("sarathi", chunk_size=8, watermark=0.0)
    # Iteration 1: D decodes (1 token); A (20) is admitted with a 7-token chunk, KV for its
    # whole prompt (20 tokens = 2 blocks) reserved at admission.
    plan = s.plan(view(waiting=[req(1, 20)], running=[decoding(0, 16, 2, 2)]))
    assert plan.decode == (0,) and plan.prefill == (PrefillChunk(1, 7, 20),)
    # Iteration 2: D decodes, A continues with 7 (13 left); no block needed (reserved). (With no
    # block free at all, D's turn would preempt A: see tests/test_sarathi_rules.py.)
    a = req(1, 20, computed=7, blocks=2, running=True)
    plan = s.plan(view(running=[decoding(0, 16, 3, 2), a], free=1))
    assert plan.decode == (0,) and chunks(plan) == [(1, 7)]
    # Iteration 3: A's last 6 tokens, and the 1 token left goes to B, admitted with a 1-token chunk.
    a.num_computed = 14
    plan = s.plan(view(waiting=[req(2, 10)], running=[decoding(0, 16, 4, 2), a]))
    assert plan.decode == (0,) and plan.prefill == (PrefillChunk(1, 6), PrefillChunk(2, 1, 10))
    assert plan.num_tokens == 8 == s.token_budget(view())


def test_sarathi_admits_first_come_first_served_and_stops_at_the_watermark():
    s = sched("sarathi", chunk_size=64, watermark=0.1)  # 10 of 100 blocks kept free
    # A needs 50 blocks (800 tokens), 55 free: 55 - 50 < 10, so A waits and so does B behind it.
    plan = s.plan(view(waiting=[req(0, 800), req(1, 16)], free=55))
    assert plan.empty
    assert chunks(s.plan(view(waiting=[req(0, 800), req(1, 16)], free=60))) == [(0, 64)]


def test_sarathi_accepts_the_token_budget_alias_and_rejects_impossible_prompts():
    s = sched("sarathi", token_budget=4)
    assert s.token_budget(view()) == 4
    plan = s.plan(view(waiting=[req(0, 5000), req(1, 3)], max_len=4096))
    assert plan.reject == (0,) and chunks(plan) == [(1, 3)]


# -------------------------------------------------------------------------------------------
# fastgen


def test_fastgen_composes_short_prompts_and_splits_a_long_one_to_fill_the_budget_exactly():
    s = sched("fastgen", token_budget=8)
    # D decodes (1), S1 (3) and S2 (2) whole, L (40) gets the last 2 tokens: 1 + 3 + 2 + 2 = 8.
    plan = s.plan(view(waiting=[req(1, 3), req(2, 2), req(3, 40)], running=[decoding(0, 16, 2, 2)]))
    assert plan.decode == (0,) and chunks(plan) == [(1, 3), (2, 2), (3, 2)]


def test_fastgen_defers_a_decode_without_a_block_and_skips_prompts_that_do_not_fit():
    s = sched("fastgen", token_budget=8)
    # D1 has filled its block (16 cached in 1) and 0 are free: deferred; D2 has room: decodes.
    # P is mid-prompt with 6 tokens of room in its last block: it gets exactly 6.
    # The new request S gets no token (no free block) and is skipped, not admitted.
    p = req(3, 30, computed=10, blocks=1, running=True)
    plan = s.plan(view(waiting=[req(4, 2)], running=[decoding(1, 10, 7, 1), decoding(2, 4, 2, 1), p], free=0))
    assert plan.decode == (2,) and chunks(plan) == [(3, 6)] and plan.preempt == ()


def test_fastgen_preempts_the_newest_request_only_when_nothing_at_all_can_run():
    s = sched("fastgen")
    plan = s.plan(view(running=[decoding(1, 10, 7, 1), decoding(2, 20, 13, 2)], free=0))
    assert plan.decode == () and plan.prefill == () and plan.preempt == (2,)


# -------------------------------------------------------------------------------------------
# vllm_chunked (V1)


def test_vllm_chunked_schedules_decodes_then_chunks_new_prompts_within_2048_by_default():
    s = sched("vllm_chunked")
    assert s.token_budget(view()) == 2048
    # D1, D2 decode (2 tokens); A (3000) gets the remaining 2046.
    plan = s.plan(view(waiting=[req(2, 3000)], running=[decoding(0, 16, 2, 2), decoding(1, 16, 2, 2)], free=500,
                       total=500))
    assert plan.decode == (0, 1) and chunks(plan) == [(2, 2046)]


def test_vllm_chunked_preempts_the_newest_and_admits_nothing_in_that_step():
    s = sched("vllm_chunked", max_num_batched_tokens=8)
    # Case 1: D (admitted last) needs a block, none free: the newest running request is D
    # itself, so D is preempted; P (mid-prompt, 16 of 40) then gets 8 tokens in D's freed blocks;
    # W waits because this step preempted.
    p = req(0, 40, computed=16, blocks=1, running=True)
    plan = s.plan(view(waiting=[req(2, 4)], running=[p, decoding(1, 16, 17, 2)], free=0))
    assert plan.preempt == (1,) and chunks(plan) == [(0, 8)] and plan.decode == ()
    # Case 2: D (room in its blocks) is scheduled first, then P needs a block: D, the newest,
    # is preempted and its decode taken back; P gets the 7 tokens it was offered.
    p = req(0, 60, computed=16, blocks=1, running=True)
    plan = s.plan(view(running=[p, decoding(1, 16, 5, 2)], free=0))
    assert plan.preempt == (1,) and chunks(plan) == [(0, 7)] and plan.decode == ()


# -------------------------------------------------------------------------------------------
# priority


def test_priority_admits_the_shortest_prompt_first():
    s = sched("priority")
    plan = s.plan(view(waiting=[req(0, 30, arrival_s=0), req(1, 10, arrival_s=1)], now_s=1))
    assert chunks(plan) == [(1, 10), (0, 30)]


def test_priority_preempts_a_worse_running_request_for_a_better_waiting_one():
    s = sched("priority", watermark=0.0)
    # L (100-token prompt) holds 7 of 8 blocks; S (10 tokens) needs 1, 0 free: L is evicted.
    running = [decoding(0, 100, 1, 7)]
    plan = s.plan(view(waiting=[req(1, 10, arrival_s=100)], running=running, free=0, total=8, now_s=100))
    assert plan.preempt == (0,) and chunks(plan) == [(1, 10)]
    # Without preemption, or with aging of 1 token/s (S arrived 100 s after L: key 10 + 100 =
    # 110 > L's 100), L keeps decoding and S waits.
    for cfg in ({"preempt": False}, {"aging": 1.0}):
        plan = sched("priority", watermark=0.0, **cfg).plan(
            view(waiting=[req(1, 10, arrival_s=100)], running=running, free=0, total=8, now_s=100))
        assert plan.decode == (0,) and plan.preempt == () and plan.prefill == ()


def test_priority_evicts_the_worst_key_not_the_newest_when_decodes_run_out_of_blocks():
    s = sched("priority")
    long_old, short_new = decoding(0, 64, 1, 4), decoding(1, 16, 1, 1)
    plan = s.plan(view(running=[long_old, short_new], free=1))  # both need a block, 1 free
    assert plan.preempt == (0,) and plan.decode == (1,)


def test_priority_classes_come_from_prefix_ids_with_a_default_for_requests_without_one():
    s = sched("priority", rule="prefix_class", default_class=5)
    plan = s.plan(view(waiting=[req(0, 10, prefix=7), req(1, 10), req(2, 10, prefix=1)]))
    assert [c.rid for c in plan.prefill] == [2, 1, 0]


# -------------------------------------------------------------------------------------------
# routers


def loads(*kv: float, outstanding=None) -> ClusterView:
    out = outstanding or [0] * len(kv)
    return ClusterView(0, tuple(ReplicaLoad(i, 0, 0, out[i], f) for i, f in enumerate(kv)))


def router(kind: str, **cfg):
    entry = reg.ROUTERS.get(kind)
    return entry.cls(entry.config(**cfg))


def test_random_router_is_reproducible_from_its_seed_and_spreads_requests():
    a = [router("random", seed=3).route(req(0, 1), loads(0, 0, 0, 0)) for _ in range(1)]
    r1, r2 = router("random", seed=3), router("random", seed=3)
    seq1 = [r1.route(req(i, 1), loads(0, 0, 0, 0)) for i in range(400)]
    seq2 = [r2.route(req(i, 1), loads(0, 0, 0, 0)) for i in range(400)]
    assert seq1 == seq2 and a[0] == seq1[0]
    assert all(60 <= seq1.count(i) <= 140 for i in range(4))  # 100 expected, sd ~ 8.7


def test_least_kv_router_picks_the_emptiest_cache_and_breaks_ties_by_load():
    r = router("least_kv")
    assert r.route(req(0, 1), loads(0.5, 0.2, 0.9)) == 1
    tied = ClusterView(0, (ReplicaLoad(0, 3, 1, 0, 0.0), ReplicaLoad(1, 0, 1, 0, 0.0)))
    assert r.route(req(0, 1), tied) == 1


def test_session_affinity_keeps_a_session_on_one_replica_and_balances_requests_without_one():
    r = router("session_affinity")
    views = [loads(0, 0, 0, outstanding=[5, 1, 9]), loads(0, 0, 0, outstanding=[0, 7, 3])]
    for sid in range(50):
        assert len({r.route(req(0, 1, session=sid), v) for v in views}) == 1
    assert [r.route(req(0, 1), v) for v in views] == [1, 0]
    spread = [r.route(req(0, 1, session=s), views[0]) for s in range(300)]
    assert all(60 <= spread.count(i) <= 140 for i in range(3))


# -------------------------------------------------------------------------------------------
# end-to-end runs

BASE = {
    "name": "sched-test", "seed": 1,
    "hardware": {"device": {"kind": "gpu", "preset": "A100-80GB"}, "timing": {"kind": "roofline"}},
    "model": {"kind": "transformer", "preset": "Llama-2-7B"},
    "engine": {"gpu_memory_utilization": 0.9, "activation_reserve": "2GiB", "max_model_len": 512},
    "workload": {"kind": "synthetic", "num_requests": 30, "arrival": {"process": "poisson", "rate": "20/s"},
                 "prompt_tokens": {"dist": "uniform", "low": 1, "high": 400},
                 "output_tokens": {"dist": "uniform", "low": 1, "high": 60}},
    "policies": {"scheduler": {"kind": "vllm"}},
}


def scenario(overrides=(), **top):
    return load_scenario({**BASE, **top}, list(overrides))


def small_kv_reserve(blocks: int) -> str:
    """activation_reserve that leaves ``blocks`` KV blocks of 16 tokens on the A100-80GB."""
    from simulator.runner import memory_plan

    mem = memory_plan(scenario())
    per_block = mem.kv_bytes_per_token * 16
    return f"{(mem.usable_bytes - mem.weight_bytes - blocks * per_block - per_block / 2) / 2**20:.3f}MiB"


NEW = {
    "sarathi": ("chunk_size", "token_budget"),
    "fastgen": ("token_budget", "token_budget"),
    "vllm_chunked": ("max_num_batched_tokens", "max_num_batched_tokens"),
    "priority": ("max_num_batched_tokens", "max_num_batched_tokens"),
}


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(kind=st.sampled_from(sorted(NEW)), budget=st.integers(520, 1200), blocks=st.integers(33, 90),
       rate=st.sampled_from(["5/s", "50/s", "500/s"]), seed=st.integers(0, 1000), n=st.integers(5, 40))
def test_new_schedulers_keep_the_budget_lose_no_request_and_never_overfill_the_kv_cache(
        kind, budget, blocks, rate, seed, n):
    field = NEW[kind][0]
    sc = scenario([f"policies.scheduler={{kind: {kind}, {field}: {budget}}}",
                   f"engine.activation_reserve={small_kv_reserve(blocks)}", f"workload.arrival.rate={rate}",
                   f"workload.num_requests={n}", f"seed={seed}"])
    res = run_scenario(sc)
    b, q = res.batches, res.requests
    assert int(b["kv_blocks_total"][0]) == blocks
    assert (b["kv_blocks_used"] <= b["kv_blocks_total"]).all()
    per_iter = b["prefill_tokens"] / b["iterations"] + b["decode_rows"]
    has_prefill = b["prefill_tokens"] > 0
    assert (b["iterations"][has_prefill] == 1).all()  # chunks are never folded into decode segments
    assert (per_iter[has_prefill] <= budget).all()
    assert sorted(q["rid"].tolist()) == list(range(n))
    done = q["status"] == FINISHED
    assert (done | (q["status"] == REJECTED)).all()
    assert (q["generated_tokens"][done] == q["output_tokens"][done]).all()
    ev = res.events
    finished = ev["request"][ev["kind"] == EventKind.FINISHED]
    assert len(finished) == len(set(finished.tolist())) == int(done.sum())


@pytest.mark.parametrize("kind", sorted(NEW))
def test_the_steady_decode_promise_holds_turning_the_fast_path_off_changes_nothing(kind, monkeypatch):
    # Overload (30 requests/s) on a small cache, so admissions block on KV and preemptions happen.
    sc = scenario([f"policies.scheduler={{kind: {kind}}}", f"engine.activation_reserve={small_kv_reserve(60)}",
                   "workload.arrival.rate=30/s", "workload.num_requests=80"])
    fast = run_scenario(sc)
    monkeypatch.setattr(reg.SCHEDULERS.get(kind).cls, "steady_decode", False)
    slow = run_scenario(sc)
    assert fast.summary["batch_segments"] < slow.summary["batch_segments"]
    for col in ("first_token_s", "finish_s", "preemptions", "status"):
        assert np.array_equal(fast.requests[col], slow.requests[col], equal_nan=True), col
    assert np.array_equal(fast.itl_s, slow.itl_s)


@pytest.mark.parametrize("router_kind", ["round_robin", "least_outstanding"])
def test_more_replicas_never_raise_mean_latency_for_the_same_trace(router_kind):
    means = []
    for replicas in (1, 2, 3):
        sc = scenario(["workload.num_requests=300", "workload.arrival.rate=12/s",
                       "workload.prompt_tokens={dist: lognormal, median: 300, sigma: 0.8, min: 2, max: 500}",
                       "workload.output_tokens={dist: lognormal, median: 120, sigma: 0.8, min: 2, max: 500}",
                       f"cluster={{replicas: {replicas}, router: {{kind: {router_kind}}}}}"])
        means.append(run_scenario(sc).summary["e2e_s"]["mean"])
    assert means[0] >= means[1] >= means[2], means


# -------------------------------------------------------------------------------------------
# PolicyError: a test-defined scheduler run end to end


class BadConfig(StrictConfig):
    block_size: int = Field(default=16, gt=0)
    mode: str = "over_budget"


class BadScheduler:
    """First come, first served, whole prompts; ``mode`` makes it break one framework rule."""

    Config = BadConfig
    steady_decode = False

    def __init__(self, config: BadConfig) -> None:
        self.config = config
        self.seen: set[int] = set()

    def token_budget(self, view: SchedulerView) -> int:
        return 16

    def plan(self, view: SchedulerView) -> BatchPlan:
        mode = self.config.mode
        live = {r.rid for r in view.running} | {r.rid for r in view.waiting}
        if mode == "finished" and self.seen - live:
            return BatchPlan(decode=(min(self.seen - live),))
        self.seen |= {r.rid for r in view.running}
        if mode == "reject_running" and view.running:
            return BatchPlan(reject=(view.running[0].rid,))
        decode = tuple(r.rid for r in view.running)
        if view.waiting and not view.running:
            r = view.waiting[0]
            if mode == "over_budget":
                return BatchPlan(prefill=(PrefillChunk(r.rid, r.prefill_remaining),))
            if mode == "over_kv":
                return BatchPlan(prefill=(PrefillChunk(r.rid, min(r.prefill_remaining, 16), 10**9),))
            return BatchPlan(prefill=(PrefillChunk(r.rid, min(r.prefill_remaining, 16)),))
        if view.running and view.running[0].in_prefill:
            r = view.running[0]
            return BatchPlan(prefill=(PrefillChunk(r.rid, min(r.prefill_remaining, 16)),))
        return BatchPlan(decode=decode)


@pytest.mark.parametrize("mode, message", [
    ("over_budget", "over its budget of 16"),
    ("reject_running", "which is not waiting"),
    ("over_kv", "KV blocks but only"),
    ("finished", "which is finished"),
])
def test_the_framework_refuses_a_bad_plan_with_a_policy_error_naming_the_scheduler(mode, message):
    sc = scenario([f"policies.scheduler={{kind: '{__name__}:BadScheduler', mode: {mode}}}",
                   "workload.prompt_tokens={dist: fixed, value: 40}", "workload.num_requests=4"])
    with pytest.raises(PolicyError, match=message) as info:
        run_scenario(sc)
    assert info.value.policy == f"{__name__}:BadScheduler"


def test_a_well_behaved_test_scheduler_runs_every_request_to_the_end():
    sc = scenario([f"policies.scheduler={{kind: '{__name__}:BadScheduler', mode: fine}}",
                   "workload.prompt_tokens={dist: fixed, value: 40}", "workload.num_requests=4"])
    res = run_scenario(sc)
    assert (res.requests["status"] == FINISHED).all()
    assert np.all(res.batches["prefill_tokens"] <= 16)
