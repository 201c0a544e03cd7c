"""KV eviction (StreamingLLM, H2O) and multi-tier offload (GPU -> host DRAM -> SSD with prefetch):
a request's KV never exceeds its cap, a cap above every context is plain paging, a smaller budget
fits a bigger batch, tiers conserve bytes and never overflow, a block in use is never spilled, the
fast path changes nothing, and the long-context workload draws what it promises."""

from __future__ import annotations

import numpy as np
import pytest
import simpy
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from test_serving_invariants import assert_same_run, check_invariants, run, scenario

from policies.caching.h2o import H2oConfig, H2oPolicy
from policies.caching.streaming import StreamingConfig, StreamingPolicy
from policies.caching.tiered import TieredConfig, TieredPolicy
from simulator.config.loader import resolve_component
from simulator.core import registry as reg
from simulator.core.request import Request
from simulator.core.rng import RngStreams
from simulator.dashboard import TITLE_TIERS, render_report
from simulator.serving.kv_cache import CappedKvCache
from simulator.serving.kv_tiers import HOST, SSD, TieredOffload

KV_PER_TOKEN = 2 * 32 * 32 * 128 * 2  # Llama-2-7B, bf16


def long_prompts(kind: str | None, kv_tokens: int = 8192, rate: str = "50/s", n: int = 60, seed: int = 1,
                 **policy) -> dict:
    sc = scenario(scheduler={"kind": "vllm"}, kv_tokens=kv_tokens, seed=seed, n=n,
                  arrival={"process": "poisson", "rate": rate}, prompt=(1000, 1800), output=(100, 240))
    if kind is not None:
        sc["policies"]["kv_cache"] = {"kind": kind, **policy}
    return sc


def tiered(host_capacity: str = "300MiB", rate: str = "20/s", seed: int = 1, **policy) -> dict:
    sc = scenario(scheduler={"kind": "vllm"}, kv_tokens=2560, seed=seed, n=60,
                  arrival={"process": "poisson", "rate": rate}, prompt=(100, 600), output=(200, 600))
    sc["policies"]["kv_cache"] = {"kind": "tiered", "host_capacity": host_capacity, **policy}
    return sc


CASES = {
    "streaming window 508": long_prompts("streaming", window_tokens=508),
    "streaming window 252 tight": long_prompts("streaming", window_tokens=252, kv_tokens=4096),
    "h2o 20 percent": long_prompts("h2o", budget_fraction=0.2, min_tokens=64),
    "h2o 50 percent tight": long_prompts("h2o", budget_fraction=0.5, kv_tokens=4096),
    "tiered spilling to SSD": tiered("300MiB"),
    "tiered host only": tiered("8GiB"),
    "tiered SSD only": tiered("10MiB"),
}


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_every_new_kv_policy_keeps_the_serving_invariants_and_the_fast_path_changes_nothing(case):
    fast, fast_sim = run(case, steady=True)
    slow, slow_sim = run(case, steady=False)
    check_invariants(fast, fast_sim)
    check_invariants(slow, slow_sim)
    assert_same_run(fast, slow)
    assert fast.summary["kv_cache"] == slow.summary["kv_cache"] or "occupancy" in fast.summary["kv_cache"]


# ------------------------------------------------------------------------------------------------
# eviction: StreamingLLM and H2O


def test_streaming_keeps_each_request_within_sinks_plus_window_and_attends_to_fewer_tokens():
    res, sim = run(long_prompts("streaming", sink_tokens=4, window_tokens=252, accuracy_delta=-0.5,
                                quality_note="PG19 perplexity +0.5 (Xiao et al.)"))
    kv = sim.cluster.replicas[0].kv
    assert isinstance(kv, CappedKvCache)
    assert kv.peak_request_blocks <= kv.blocks_for(256)
    s = res.summary["kv_cache"]
    assert s["policy"] == "streaming" and s["evicted_tokens"] > 0
    assert s["accuracy_delta"] == -0.5 and s["quality_note"].startswith("PG19")  # reported, never computed


def test_h2o_keeps_a_budget_proportional_to_the_context():
    pol = H2oPolicy(H2oConfig(budget_fraction=0.2, min_tokens=64))
    ctx = np.arange(1, 5000)
    res = pol.resident_array(ctx)
    assert np.array_equal(res, [pol.resident(int(c)) for c in ctx])
    assert (res <= ctx).all() and (np.diff(res) >= 0).all() and (np.diff(res) <= 1).all()
    assert pol.resident(10_000) == 2000 and pol.resident(100) == 64 and pol.resident(30) == 30
    _, sim = run(long_prompts("h2o", budget_fraction=0.2, min_tokens=64))
    kv = sim.cluster.replicas[0].kv
    assert kv.peak_request_blocks <= kv.blocks_for(pol.resident(2040))  # longest context: 1800 + 240


def test_a_cap_larger_than_every_context_gives_the_same_run_as_paged():
    paged, _ = run(long_prompts(None))
    big, _ = run(long_prompts("streaming", window_tokens=4096))
    assert_same_run(paged, big)
    assert paged.summary["ttft_s"] == big.summary["ttft_s"]
    assert paged.summary["batch_segments"] == big.summary["batch_segments"]


def test_a_smaller_kv_budget_fits_a_bigger_batch_and_raises_throughput_at_a_fixed_memory():
    runs = [run(long_prompts(kind, **kw))[0].summary for kind, kw in
            ((None, {}), ("streaming", {"window_tokens": 1020}), ("streaming", {"window_tokens": 508}))]
    tput = [s["output_tokens_per_s"] for s in runs]
    batch = [s["batch_size_mean"] for s in runs]
    assert tput[0] < tput[1] < tput[2]
    assert batch[0] < batch[1] < batch[2]


class CappedCacheMachine(RuleBasedStateMachine):
    """Requests are admitted, grow token by token and leave a streaming-capped cache."""

    def __init__(self) -> None:
        super().__init__()
        self.pol = StreamingPolicy(StreamingConfig(sink_tokens=4, window_tokens=40))
        self.kv = CappedKvCache(30, 4, self.pol)
        self.running: list[Request] = []

    @rule(prompt=st.integers(1, 120))
    def admit(self, prompt):
        r = Request(len(self.running) + 1000 * self.kv.used, 0, prompt, 500)
        if self.kv.need(r, prompt) <= self.kv.free:
            self.kv.grow(r, prompt)
            r.num_computed = prompt
            self.running.append(r)

    @precondition(lambda self: self.running)
    @rule(i=st.integers(0, 50), tokens=st.integers(1, 30))
    def grow(self, i, tokens):
        r = self.running[i % len(self.running)]
        if self.kv.need(r, tokens) <= self.kv.free:
            self.kv.grow(r, tokens)
            r.num_computed += tokens

    @precondition(lambda self: self.running)
    @rule(i=st.integers(0, 50))
    def leave(self, i):
        self.kv.release(self.running.pop(i % len(self.running)))

    @invariant()
    def capacity_and_the_per_request_cap_are_never_exceeded(self):
        kv = self.kv
        assert 0 <= kv.used <= kv.total_blocks
        assert kv.used == sum(r.kv_blocks for r in self.running)
        for r in self.running:
            assert r.kv_blocks == kv.blocks_for(self.pol.resident(r.num_computed)) <= kv.blocks_for(44)


TestCappedCacheMachine = CappedCacheMachine.TestCase
TestCappedCacheMachine.settings = settings(max_examples=40, stateful_step_count=30, deadline=None)


# ------------------------------------------------------------------------------------------------
# tiers: GPU -> host DRAM -> SSD


def check_conservation(off: TieredOffload) -> None:
    for tier in (HOST, SSD):
        assert off.written[tier] == pytest.approx(off.read[tier] + off.resident(tier), rel=1e-12, abs=1)


def test_tiered_offload_spills_to_ssd_prefetches_back_and_conserves_bytes_per_tier():
    res, sim = run(tiered("300MiB"))
    off = sim.cluster.replicas[0].offload
    s = res.summary["kv_cache"]
    assert s["spills"] > 0 and s["prefetches"] > 0 and s["host_hits"] > 0
    assert s["ssd_write_bytes"] > 0 and s["ssd_read_bytes"] > 0
    assert s["pcie_d2h_bytes"] >= s["pcie_h2d_bytes"] > 0
    assert s["host_peak_bytes"] <= 300 * 2**20 and max(s["occupancy"]["host_bytes"]) <= 300 * 2**20
    assert s["stall_s"] >= s["prefetch_late_s"] >= 0
    assert s["host_hit_rate"] + s["ssd_hit_rate"] == pytest.approx(1.0)
    check_conservation(off)
    assert off.read[HOST] + off.resident(HOST) <= s["pcie_d2h_bytes"] + s["ssd_read_bytes"]


def test_a_host_big_enough_for_everything_never_touches_the_ssd_and_a_tiny_one_uses_only_the_ssd():
    big = run(tiered("8GiB"))[0].summary["kv_cache"]
    assert big["ssd_write_bytes"] == 0 and big["host_hit_rate"] == 1.0
    small = run(tiered("10MiB"))[0].summary["kv_cache"]
    assert small["host_peak_bytes"] == 0 and small["ssd_hit_rate"] == 1.0 and small["ssd_read_bytes"] > 0


class _Checked(TieredPolicy):
    """The tiered policy, asserting that every victim is an idle host entry it was offered."""

    def __init__(self, config, off_ref) -> None:
        super().__init__(config)
        self.off_ref = off_ref

    def victims(self, candidates, need):
        out = super().victims(candidates, need)
        off = self.off_ref[0]
        offered = {rid for rid, _ in candidates}
        for rid in out:
            e = off.entries[rid]
            assert rid in offered and e.tier == HOST and e.busy is None  # in use: never a victim
        return out


class TierMachine(RuleBasedStateMachine):
    """Requests are offloaded and resumed at random times; time advances in between."""

    def __init__(self) -> None:
        super().__init__()
        self.env = simpy.Environment()
        ref: list = []
        host = resolve_component({"kind": "host", "preset": "DGX-A100-host"}, reg.HARDWARE, "h")
        ssd = resolve_component({"kind": "ssd", "preset": "DC-NVMe-PCIe4"}, reg.HARDWARE, "s")
        cfg = TieredConfig(host_capacity="64MiB", ssd_capacity="160MiB", prefetch_depth=2)
        self.off = TieredOffload(self.env, 1.0, host.cls(host.config), ssd.cls(ssd.config), _Checked(cfg, ref))
        ref.append(self.off)
        self.next = 0
        self.out: list[Request] = []

    @rule(mib=st.integers(1, 40))
    def offload(self, mib):
        r = Request(self.next, 0, mib * 2**20, 10)
        r.num_computed = mib * 2**20
        self.next += 1
        if self.off.swap_out(r):
            self.out.append(r)

    @precondition(lambda self: self.out)
    @rule(newest=st.booleans())
    def resume(self, newest):
        self.off.swap_in(self.out.pop(-1 if newest else 0))

    @rule(us=st.integers(1, 20_000))
    def advance(self, us):
        self.off.pending.clear()
        self.env.run(until=self.env.now + us * 1_000_000)

    @invariant()
    def tiers_never_overflow_and_bytes_are_conserved(self):
        off = self.off
        assert 0 <= off.host_store.level <= off.host_store.capacity
        assert 0 <= off.ssd_used <= off.ssd_space
        assert off.host_claim - off.spill_pending <= off.swap_space
        for tier in (HOST, SSD):
            assert off.read[tier] <= off.written[tier]

    def teardown(self):
        self.env.run()  # let every move in flight finish: then bytes are conserved exactly
        check_conservation(self.off)


TestTierMachine = TierMachine.TestCase
TestTierMachine.settings = settings(max_examples=25, stateful_step_count=25, deadline=None)


# ------------------------------------------------------------------------------------------------
# long-context workload and the report


def long_context(**cfg):
    c = resolve_component({"kind": "long_context", **cfg}, reg.WORKLOADS, "workload")
    return c.cls(c.config).generate(RngStreams(7))


def test_long_context_prompts_are_uniform_in_the_range_with_short_outputs_and_poisson_arrivals():
    t = long_context(num_requests=4000, rate="2/s")
    p = t.prompt_tokens
    assert p.min() >= 32768 and p.max() <= 131072
    assert p.mean() == pytest.approx((32768 + 131072) / 2, rel=0.02)
    assert np.quantile(p, 0.25) == pytest.approx(32768 + 0.25 * 98304, rel=0.03)
    assert t.output_tokens.min() >= 16 and t.output_tokens.max() <= 256
    gaps = np.diff(t.arrival_s)
    assert gaps.mean() == pytest.approx(0.5, rel=0.05)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.06)  # exponential: CV 1
    assert np.array_equal(long_context(num_requests=4000, rate="2/s").prompt_tokens, p)  # seeded


def test_log_uniform_long_context_prompts_have_their_median_at_the_geometric_mean():
    p = long_context(num_requests=4000, rate="1/s", prompt_low=1000, prompt_high=100_000,
                     log_uniform=True).prompt_tokens
    assert p.min() >= 1000 and p.max() <= 100_000
    assert np.median(p) == pytest.approx(10_000, rel=0.08)


def test_a_long_context_range_upside_down_is_a_config_error():
    from simulator.core.errors import ConfigError

    with pytest.raises(ConfigError, match="prompt_high"):
        resolve_component({"kind": "long_context", "num_requests": 1, "rate": "1/s", "prompt_low": 10,
                           "prompt_high": 5}, reg.WORKLOADS, "workload")


def test_the_report_has_a_kv_tier_section_only_for_runs_with_kv_policy_counters():
    res, _ = run(tiered())
    res.wall_s = 0.0
    page = render_report(res)
    assert TITLE_TIERS in page and "SSD read" in page and "host DRAM" in page
    assert render_report(res) == page  # deterministic
    plain, _ = run(long_prompts(None, n=10))
    assert TITLE_TIERS not in render_report(plain)


def test_a_tiny_streaming_cap_does_not_make_the_vllm_scheduler_preempt_in_a_loop():
    # a capped request whose blocks are full needs no new block for its next token (the oldest
    # window token is evicted): the scheduler must ask the cache, not assume one block per row
    tiny, _ = run(long_prompts("streaming", window_tokens=252))
    small, _ = run(long_prompts("streaming", window_tokens=508))
    assert tiny.summary["preemptions"] == 0
    assert tiny.summary["output_tokens_per_s"] > small.summary["output_tokens_per_s"]
