"""KV-cache policies: a Hypothesis state machine drives the radix prefix cache (capacity never
exceeded, the victim is always an unreferenced leaf, a block in use is never evicted, a hit never
returns another group's blocks, blocks are conserved between private, cached and free), and the
serving loop runs every policy with the same invariants as paged KV and the same results with and
without the steady-decode fast path."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from test_serving_invariants import assert_same_run, check_invariants, run, scenario

from policies.caching.prefix import RadixPrefixCache
from simulator.config.loader import load_scenario
from simulator.core.errors import ConfigError
from simulator.core.request import Request
from simulator.serving.kv_cache import PrefixKvCache

BS = 4
TOTAL = 24


class PrefixCacheMachine(RuleBasedStateMachine):
    """Requests of 3 groups arrive, are admitted with their cached prefix, grow and leave."""

    def __init__(self) -> None:
        super().__init__()
        self.kv = PrefixKvCache(TOTAL, BS, RadixPrefixCache())
        self.running: list[Request] = []
        self.next = 0

    @rule(group=st.integers(0, 2), prompt=st.integers(1, 40), shared=st.integers(0, 40))
    def admit(self, group, prompt, shared):
        r = Request(self.next, 0, prompt, 50, session_id=-1, prefix_id=group, prefix_tokens=min(shared, prompt))
        self.next += 1
        self.kv.refresh_hits([r])
        hit = r.num_computed
        need = self.kv.need(r, r.prefill_remaining)
        if need > self.kv.free:
            r.num_computed = 0
            return
        self.kv.attach(r)
        assert r.num_computed <= hit
        for node in self.kv.held.get(r.rid, []):  # hits are blocks of this request's own group
            assert node.key[0] == ("p", group)
        self.kv.grow(r, r.prefill_remaining)
        r.num_computed = r.prefill_target
        self.running.append(r)

    @precondition(lambda self: self.running)
    @rule(i=st.integers(0, 100), tokens=st.integers(1, 12))
    def grow(self, i, tokens):
        r = self.running[i % len(self.running)]
        if self.kv.need(r, tokens) <= self.kv.free:
            self.kv.grow(r, tokens)
            r.num_computed += tokens

    @precondition(lambda self: self.running)
    @rule(i=st.integers(0, 100))
    def leave(self, i):
        r = self.running.pop(i % len(self.running))
        r.num_generated = r.max_new_tokens
        self.kv.release(r)

    @rule(n=st.integers(1, 8))
    def evict(self, n):
        tree = self.kv.tree
        cands = {id(c) for c in tree.candidates()}
        in_use = {id(node) for nodes in self.kv.held.values() for node in nodes}
        for victim in tree.evict(n):
            assert id(victim) in cands or victim.ref == 0  # a leaf freed by an earlier victim
            assert id(victim) not in in_use
            assert victim.ref == 0 and not victim.children

    @invariant()
    def capacity_never_exceeded_and_blocks_conserved(self):
        kv = self.kv
        assert 0 <= kv.used <= kv.total_blocks
        assert kv.physical <= kv.total_blocks
        assert kv.tree.size == sum(1 for _ in kv.tree.nodes())
        held = sum(len(v) for v in kv.held.values())
        assert kv.private == sum(r.kv_blocks for r in self.running) - held  # mapped: private or held cached
        assert kv.used == kv.private + sum(1 for n in kv.tree.nodes() if n.ref > 0)  # shared ones once
        for nodes in kv.held.values():
            assert all(n.ref > 0 for n in nodes)


TestPrefixCacheMachine = PrefixCacheMachine.TestCase
TestPrefixCacheMachine.settings = settings(max_examples=60, stateful_step_count=40, deadline=None)


def test_lru_evicts_the_least_recently_released_leaf_first():
    t = RadixPrefixCache()
    a = t.insert(None, [("a", 0), ("a", 1)])
    b = t.insert(None, [("b", 0)])
    t.acquire(a)
    t.release(a)  # a used after b
    assert t.evict(1) == b
    assert t.evict(1) == [a[1]] and t.evict(1) == [a[0]]


def shared_prefix_scenario(kind: str | None, rate: str = "3/s", kv_tokens: int = 4096, **policy) -> dict:
    sc = scenario(scheduler={"kind": "vllm"}, kv_tokens=kv_tokens, seed=1)
    sc["workload"] = {"kind": "shared_prefix", "num_requests": 60, "arrival": {"process": "poisson", "rate": rate},
                      "num_prefixes": 4, "popularity": 1.0,
                      "prefix_tokens": {"dist": "uniform", "low": 300, "high": 900},
                      "suffix_tokens": {"dist": "uniform", "low": 10, "high": 200},
                      "output_tokens": {"dist": "uniform", "low": 1, "high": 300}}
    if kind is not None:
        sc["policies"]["kv_cache"] = {"kind": kind, **policy}
    return sc


def multi_turn_scenario(kind: str) -> dict:
    sc = scenario(scheduler={"kind": "vllm"}, kv_tokens=3072, seed=2)
    sc["workload"] = {"kind": "multi_turn", "num_sessions": 12,
                      "session_arrival": {"process": "poisson", "rate": "2/s"},
                      "turns": {"dist": "uniform", "low": 1, "high": 5},
                      "system_tokens": {"dist": "fixed", "value": 200},
                      "user_tokens": {"dist": "uniform", "low": 20, "high": 120},
                      "output_tokens": {"dist": "uniform", "low": 20, "high": 200},
                      "think_time": "1s", "response_allowance": "1s", "max_context": 2000}
    sc["policies"]["kv_cache"] = {"kind": kind}
    return sc


POLICY_CASES = {
    "prefix shared prefixes": shared_prefix_scenario("prefix"),
    "prefix tight KV": shared_prefix_scenario("prefix", rate="8/s", kv_tokens=2560),
    "prefix multi-turn": multi_turn_scenario("prefix"),
    "swap tight KV": shared_prefix_scenario("swap", rate="8/s", kv_tokens=2560),
    "swap small swap space": shared_prefix_scenario("swap", rate="8/s", kv_tokens=2560, swap_space="100MiB"),
    "vattention 2MiB pages": shared_prefix_scenario("vattention"),
    "vattention 64KiB pages tight": shared_prefix_scenario("vattention", rate="8/s", kv_tokens=2560,
                                                           page_size="64KiB"),
}


@pytest.mark.parametrize("case", list(POLICY_CASES.values()), ids=list(POLICY_CASES))
def test_every_kv_policy_keeps_the_serving_invariants_and_the_fast_path_changes_nothing(case):
    fast, fast_sim = run(case, steady=True)
    slow, slow_sim = run(case, steady=False)
    check_invariants(fast, fast_sim)
    check_invariants(slow, slow_sim)
    assert_same_run(fast, slow)


def test_the_default_and_an_explicit_paged_policy_give_byte_identical_runs():
    a, _ = run(shared_prefix_scenario(None))
    b, _ = run(shared_prefix_scenario("paged"))
    assert_same_run(a, b)
    assert a.summary["ttft_s"] == b.summary["ttft_s"]


def test_prefix_caching_hits_shared_prefixes_and_cuts_time_to_first_token():
    base, _ = run(shared_prefix_scenario(None))
    pre, sim = run(shared_prefix_scenario("prefix"))
    st_ = sim.cluster.replicas[0].kv.stats()
    assert st_["hit_rate"] > 0.5
    assert pre.summary["ttft_s"]["mean"] < base.summary["ttft_s"]["mean"]
    assert pre.summary["kv_cache"]["hit_rate"] == pytest.approx(st_["hit_rate"])


def test_multi_turn_sessions_reuse_the_previous_turn():
    _, sim = run(multi_turn_scenario("prefix"))
    assert sim.cluster.replicas[0].kv.stats()["hit_tokens"] > 0


def test_swap_preemption_moves_kv_over_pcie_instead_of_recomputing():
    res, sim = run(shared_prefix_scenario("swap", rate="8/s", kv_tokens=2560))
    st_ = sim.cluster.replicas[0].offload.stats()
    assert res.summary["preemptions"] > 0 and st_["swap_outs"] > 0
    assert st_["bytes_to_host"] >= st_["bytes_to_device"] > 0
    assert st_["stall_s"] > 0


def test_vattention_allocates_whole_pages_and_maps_them_at_a_cost_without_overlap():
    sc = shared_prefix_scenario("vattention")
    _, sim = run(sc)
    assert sim.mem.block_size == 256  # 2 MiB / (32 KV heads x 128 x 2 B) on one L4
    sc_slow = shared_prefix_scenario("vattention", overlap=False)
    res_slow, sim_slow = run(sc_slow)
    assert not sim_slow.cluster.replicas[0].steady
    res_fast, _ = run(sc)
    assert res_slow.sim_time_s > res_fast.sim_time_s


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**16), kind=st.sampled_from(["prefix", "swap", "vattention"]),
       kv=st.sampled_from([2560, 4096]))
def test_random_shared_prefix_runs_keep_the_invariants_under_every_policy(seed, kind, kv):
    sc = shared_prefix_scenario(kind, rate="6/s", kv_tokens=kv)
    sc["seed"] = seed
    fast, sim = run(sc)
    check_invariants(fast, sim)
    slow, _ = run(sc, steady=False)
    assert_same_run(fast, slow)


def test_a_kv_policy_with_disaggregated_pools_other_than_paged_is_a_config_error():
    from simulator.runner import Simulation

    sc = shared_prefix_scenario("prefix")
    sc["cluster"] = {"pools": [{"name": "p", "role": "prefill"}, {"name": "d", "role": "decode"}],
                     "kv_transfer": {"link": {"kind": "link", "preset": "IB-HDR"}}}
    with pytest.raises(ConfigError, match="paged"):
        Simulation(load_scenario(sc))


def test_an_unknown_kv_policy_names_the_known_ones():
    with pytest.raises(ConfigError, match="prefix"):
        load_scenario(shared_prefix_scenario("prefx"))
