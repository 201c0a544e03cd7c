"""Admission and preemption under the prefix cache count shared blocks once.

A Hypothesis state machine drives ``PrefixKvCache`` the way the replica does, deciding with the
scheduler's view (``blocks_to_admit``, ``blocks_freed_by``) and the framework's plan check
(``admit_need``, ``freed_by``, ``overlap``): the predicted costs are exact for a lone admission or
preemption and never too small for a plan that preempts and admits at once; free blocks never go
negative, ``used`` is the private blocks plus each referenced cached block once, and no request
maps blocks of another session or prefix. Then whole runs: on a KV-bound replica a shared-prefix
workload holds a larger batch and serves more with ``prefix`` than with ``paged``, for every
continuous-batching scheduler, and the steady-decode fast path still changes nothing.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from test_serving_invariants import assert_same_run, check_invariants, run, scenario

from policies.caching.prefix import RadixPrefixCache
from simulator.core.contracts import KvView
from simulator.core.events import EventKind
from simulator.core.request import Request
from simulator.serving.kv_cache import PagedKvCache, PrefixKvCache

BS = 4
TOTAL = 32


def group_of(r: Request):
    return ("s", r.session_id) if r.session_id >= 0 else ("p", r.prefix_id)


class PrefixAdmissionMachine(RuleBasedStateMachine):
    """Requests of 2 sessions and 2 shared prefixes wait, are admitted by the view's count, grow,
    publish their prefix, finish or are preempted (alone or to admit another in the same plan)."""

    def __init__(self) -> None:
        super().__init__()
        self.kv = PrefixKvCache(TOTAL, BS, RadixPrefixCache())
        self.waiting: list[Request] = []
        self.running: list[Request] = []
        self.next = 0

    @rule(session=st.booleans(), gid=st.integers(0, 1), prompt=st.integers(2, 40), shared=st.integers(0, 40))
    def arrive(self, session, gid, prompt, shared):
        r = Request(self.next, 0, prompt, 30, session_id=gid if session else -1,
                    prefix_id=-1 if session else gid, prefix_tokens=min(shared, prompt - 1))
        self.next += 1
        self.waiting.append(r)

    def _admit(self, r: Request) -> None:
        """What ``Replica._iteration`` does for a waiting request's whole-prompt chunk."""
        tokens = r.prefill_remaining + r.num_computed
        self.kv.attach(r)
        tokens -= r.num_computed
        self.kv.grow(r, tokens)
        self.waiting.remove(r)
        self.running.append(r)
        r.num_computed += tokens
        self.kv.publish(r)

    @precondition(lambda self: self.waiting)
    @rule(i=st.integers(0, 100))
    def admit(self, i):
        kv = self.kv
        kv.refresh_hits(self.waiting)
        r = self.waiting[i % len(self.waiting)]
        view = kv.view()
        cost = view.blocks_to_admit(r, r.prefill_remaining)
        assert cost == kv.admit_need(r, r.prefill_remaining)
        assert cost <= KvView.blocks_to_admit(view, r, r.prefill_remaining)  # never above the private count
        if cost > view.free_blocks:
            return
        used0 = kv.used
        tokens = r.prefill_remaining + r.num_computed
        kv.attach(r)
        tokens -= r.num_computed
        kv.grow(r, tokens)
        assert kv.used - used0 == cost  # exact: shared blocks cost nothing, cached idle ones one each
        self.waiting.remove(r)
        self.running.append(r)
        r.num_computed += tokens
        before = kv.used
        kv.publish(r)
        assert kv.used <= before  # publishing only drops duplicates of blocks mapped elsewhere

    @precondition(lambda self: self.running)
    @rule(i=st.integers(0, 100), tokens=st.integers(1, 9))
    def decode(self, i, tokens):
        r = self.running[i % len(self.running)]
        if self.kv.need(r, tokens) <= self.kv.free:
            self.kv.grow(r, tokens)
            r.num_computed += tokens
            r.num_generated = min(r.num_generated + tokens, r.max_new_tokens - 1)

    @precondition(lambda self: self.running)
    @rule(i=st.integers(0, 100), finish=st.booleans())
    def leave(self, i, finish):
        kv = self.kv
        r = self.running.pop(i % len(self.running))
        freed = kv.view().blocks_freed_by(r)
        assert freed == kv.freed_by(r) and kv.freed_by(r, mapped=False) <= freed <= r.kv_blocks
        used0 = kv.used
        if finish:
            r.num_generated = r.max_new_tokens
        kv.release(r)
        assert used0 - kv.used == freed  # exactly the blocks nobody else maps
        if not finish:  # preempted by recompute: waits again with its own blocks cached
            r.num_computed = 0
            r.num_preemptions += 1
            r.prefill_target = r.prompt_tokens + r.num_generated
            self.waiting.insert(0, r)

    @precondition(lambda self: self.running and self.waiting)
    @rule(i=st.integers(0, 100), j=st.integers(0, 100), k=st.integers(1, 3))
    def preempt_to_admit(self, i, j, k):
        """One plan: preempt up to ``k`` running requests and admit a waiting one, as the replica
        checks it; the check may overestimate, never underestimate, the net blocks taken."""
        kv = self.kv
        kv.refresh_hits(self.waiting)
        victims = [self.running[(i + n) % len(self.running)] for n in range(min(k, len(self.running)))]
        victims = list({v.rid: v for v in victims}.values())
        w = self.waiting[j % len(self.waiting)]
        freed = sum(kv.freed_by(v) for v in victims)
        need = kv.admit_need(w, w.prefill_remaining) + kv.overlap(victims, [w])
        if need > kv.free + freed:
            return
        # the scheduler's own conservative count (priority): victims' mapped blocks left out
        assert need - freed <= kv.admit_need(w, w.prefill_remaining) - sum(kv.freed_by(v, False) for v in victims)
        used0 = kv.used
        for v in victims:
            self.running.remove(v)
            kv.release(v)
            v.num_computed = 0
            v.num_preemptions += 1
            v.prefill_target = v.prompt_tokens + v.num_generated
        tokens = w.prefill_remaining + w.num_computed
        kv.attach(w)
        tokens -= w.num_computed
        kv.grow(w, tokens)  # raises if the check let the plan overcommit
        assert kv.used - used0 <= need - freed
        self.waiting.remove(w)
        self.running.append(w)
        w.num_computed += tokens
        kv.publish(w)
        self.waiting[:0] = victims

    @rule(n=st.integers(1, 6))
    def evict(self, n):
        used0 = self.kv.used
        self.kv.tree.evict(n)
        assert self.kv.used == used0  # only unreferenced (already free) blocks go

    @invariant()
    def accounting(self):
        kv = self.kv
        assert kv.free >= 0 and 0 <= kv.used <= kv.total_blocks
        assert kv.physical <= kv.total_blocks
        nodes = list(kv.tree.nodes())
        referenced = [n for n in nodes if n.ref > 0]
        assert kv.pinned == len(referenced)
        assert kv.used == kv.private + len(referenced)
        held = sum(len(v) for v in kv.held.values())
        assert kv.private == sum(r.kv_blocks for r in self.running) - held
        refs: dict[int, int] = {}
        for r in self.running:
            for n in kv.held.get(r.rid, []):
                assert n.key[0] == group_of(r)  # never another session's or prefix's blocks
                refs[id(n)] = refs.get(id(n), 0) + 1
        assert all(n.ref == refs.get(id(n), 0) for n in nodes)


TestPrefixAdmissionMachine = PrefixAdmissionMachine.TestCase
TestPrefixAdmissionMachine.settings = settings(max_examples=80, stateful_step_count=50, deadline=None)


def test_plain_paging_answers_the_private_count():
    kv = PagedKvCache(10, 4)
    r = Request(0, 0, 9, 5)
    kv.grow(r, 9)
    w = Request(1, 0, 7, 5)
    view = kv.view()
    assert type(view) is KvView
    assert view.blocks_to_admit(w, 7) == view.blocks_to_grow(w, 7) == kv.admit_need(w, 7) == 2
    assert view.blocks_freed_by(r) == view.blocks_freed_by(r, mapped=False) == kv.freed_by(r) == 3
    assert kv.overlap([r], [w]) == 0


def test_a_second_request_of_a_cached_prefix_costs_only_its_own_blocks():
    kv = PrefixKvCache(20, 4, RadixPrefixCache())
    a = Request(0, 0, 18, 5, prefix_id=0, prefix_tokens=16)
    b = Request(1, 0, 19, 5, prefix_id=0, prefix_tokens=16)
    kv.attach(a)
    kv.grow(a, 18)
    a.num_computed = 18
    kv.publish(a)  # 4 prefix blocks cached and mapped by a; its 5th block is private
    assert (kv.used, kv.pinned, kv.private) == (5, 4, 1)
    kv.refresh_hits([b])
    assert b.num_computed == 16
    view = kv.view()
    assert view.blocks_to_grow(b, 3) == 5  # the private count: what paging would charge
    assert view.blocks_to_admit(b, 3) == 1  # only its own last block
    assert view.blocks_freed_by(a) == 5  # a alone maps the prefix so far
    kv.attach(b)
    kv.grow(b, 3)
    assert kv.used == 6 and kv.view().blocks_freed_by(a) == 1
    kv.release(b)
    assert kv.view().blocks_freed_by(a) == 5 and kv.view().blocks_freed_by(a, mapped=False) == 1


# -- whole runs ------------------------------------------------------------------------------------

KV_TOKENS = 6144
PREFIX, PREFIXES = 1024, 2
SUFFIX = (16, 64)
OUTPUT = (32, 128)


def kv_bound(kind: str, sched: str = "vllm", n: int = 120) -> dict:
    """Llama-2-7B on an L4 with 6144 tokens of KV, 120 requests at once, each one of 2 prefixes of
    1024 tokens + 16-64 own tokens, 32-128 output tokens: a paged cache holds ~5 of them."""
    sc = scenario(scheduler={"kind": sched}, kv_tokens=KV_TOKENS, seed=3)
    sc["workload"] = {"kind": "shared_prefix", "num_requests": n, "arrival": {"process": "fixed", "rate": "10000/s"},
                      "num_prefixes": PREFIXES, "popularity": 0.0,
                      "prefix_tokens": {"dist": "fixed", "value": PREFIX},
                      "suffix_tokens": {"dist": "uniform", "low": SUFFIX[0], "high": SUFFIX[1]},
                      "output_tokens": {"dist": "uniform", "low": OUTPUT[0], "high": OUTPUT[1]}}
    sc["policies"]["kv_cache"] = {"kind": kind}
    return sc


def test_prefix_sharing_raises_the_batch_and_throughput_of_a_kv_bound_replica():
    # A decoding request holds on average its prefix P, its suffix S and half its output O/2.
    # Paged: every request holds all of them, batch ~ KV / (P + S + O/2). Prefix: the G prefixes
    # are held once, batch ~ (KV - G P) / (S + O/2). Ideal ratio = (P + S + O/2) / (S + O/2) x
    # (KV - G P) / KV = (1024 + 40 + 40) / 80 x 4096 / 6144 = 9.2 with the mean lengths. Measured
    # 41.6 vs 4.9 = 8.4x; band [0.5, 1.2] x ideal (admission-time packing, the watermark and
    # preemptions while decodes grow move it). Decode on an L4 is weight-bound at these batch
    # sizes, so throughput follows the batch, plus the prefill skipped; measured 3.57 vs 1.00
    # req/s = 3.6x. It is below the batch ratio (the prefill of the own tokens and the decode
    # attention over the prefix still grow with the batch) and above 2.
    paged, _ = run(kv_bound("paged"))
    pre, _ = run(kv_bound("prefix"))
    s_mean = sum(SUFFIX) / 2
    o_half = sum(OUTPUT) / 4
    ideal = (PREFIX + s_mean + o_half) / (s_mean + o_half) * (KV_TOKENS - PREFIXES * PREFIX) / KV_TOKENS
    ratio = pre.summary["batch_size_mean"] / paged.summary["batch_size_mean"]
    assert 0.5 * ideal <= ratio <= 1.2 * ideal
    gain = pre.summary["throughput_rps"] / paged.summary["throughput_rps"]
    assert 2.0 <= gain <= ratio
    assert pre.summary["kv_cache"]["hit_rate"] > 0.9


@pytest.mark.parametrize("sched", ["vllm_chunked", "sarathi", "fastgen", "priority", "orca"])
def test_every_scheduler_admits_more_with_shared_blocks_counted_once(sched):
    paged, _ = run(kv_bound("paged", sched, n=60))
    pre, sim = run(kv_bound("prefix", sched, n=60))
    check_invariants(pre, sim)
    assert pre.summary["batch_size_mean"] > 1.3 * paged.summary["batch_size_mean"]
    assert pre.summary["throughput_rps"] > paged.summary["throughput_rps"]


# fastgen is left out: its liveness preemption can hit a request in its first prefill, which the
# token-count invariant (one emission per re-prefill) does not allow for, with paged KV as well
SCHEDS = ["vllm", "vllm_chunked", "sarathi", "priority", "orca", "static"]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**16), sched=st.sampled_from(SCHEDS), kv=st.sampled_from([2048, 3072, 6144]),
       multi_turn=st.booleans())
def test_random_prefix_runs_keep_the_invariants_and_the_fast_path_changes_nothing(seed, sched, kv, multi_turn):
    sc = scenario(scheduler={"kind": sched}, kv_tokens=kv, seed=seed)
    if multi_turn:
        sc["workload"] = {"kind": "multi_turn", "num_sessions": 8,
                          "session_arrival": {"process": "poisson", "rate": "4/s"},
                          "turns": {"dist": "uniform", "low": 1, "high": 4},
                          "system_tokens": {"dist": "fixed", "value": 300},
                          "user_tokens": {"dist": "uniform", "low": 20, "high": 100},
                          "output_tokens": {"dist": "uniform", "low": 10, "high": 120},
                          "think_time": "0.5s", "response_allowance": "0.5s", "max_context": 1500}
    else:
        sc["workload"] = {"kind": "shared_prefix", "num_requests": 40,
                          "arrival": {"process": "poisson", "rate": "20/s"},
                          "num_prefixes": 3, "popularity": 1.0,
                          "prefix_tokens": {"dist": "uniform", "low": 200, "high": 900},
                          "suffix_tokens": {"dist": "uniform", "low": 10, "high": 200},
                          "output_tokens": {"dist": "uniform", "low": 1, "high": 200}}
    sc["policies"]["kv_cache"] = {"kind": "prefix"}
    fast, fast_sim = run(sc, steady=True)
    slow, slow_sim = run(sc, steady=False)
    check_invariants(fast, fast_sim)
    check_invariants(slow, slow_sim)
    assert_same_run(fast, slow)
    for rep in fast_sim.cluster.replicas:
        assert rep.kv.pinned == 0 and rep.kv.private == 0  # every reference returned


def test_requests_preempted_before_or_at_their_first_token_emit_each_token_once():
    """vllm_chunked + prefix cache on a tight KV cache (seed 13381, found by the property test above):
    request 3 is preempted in the middle of its first (chunked) prefill and emits its first token once,
    when it is prefilled again; request 35 is preempted at the instant its first token is emitted and
    its re-prefill emits its second. Each request's emissions (its runs of iterations) equal the tokens
    it generated, and the batches' emissions add up to them (the invariant counts a re-prefill's token
    only for a preemption after the first token)."""
    sc = scenario(scheduler={"kind": "vllm_chunked"}, kv_tokens=3072, seed=13381)
    sc["workload"] = {"kind": "shared_prefix", "num_requests": 40, "arrival": {"process": "poisson", "rate": "20/s"},
                      "num_prefixes": 3, "popularity": 1.0,
                      "prefix_tokens": {"dist": "uniform", "low": 200, "high": 900},
                      "suffix_tokens": {"dist": "uniform", "low": 10, "high": 200},
                      "output_tokens": {"dist": "uniform", "low": 1, "high": 200}}
    sc["policies"]["kv_cache"] = {"kind": "prefix"}
    result, sim = run(sc, steady=False)
    check_invariants(result, sim)
    ev = result.events
    first_t = {int(r): int(t) for r, t, k in zip(ev["request"], ev["t_ps"], ev["kind"]) if k == EventKind.FIRST_TOKEN}
    pre = [(int(r), int(t)) for r, t, k in zip(ev["request"], ev["t_ps"], ev["kind"]) if k == EventKind.PREEMPTED]
    assert any(t < first_t[r] for r, t in pre)  # preempted during its first prefill
    assert any(t == first_t[r] for r, t in pre)  # preempted at the instant of its first token
    for r in sim.cluster.requests:
        assert sum(b - a for _, a, b in r.runs) == r.num_generated == r.max_new_tokens
