"""Hypothesis stateful tests: requests arrive and time advances in random interleavings, and after
every step the serving invariants hold in every pool — no request lost or duplicated (also while
its KV cache is in flight between a prefill and a decode replica), the KV cache never over
capacity, the token budget of a chunked-prefill scheduler never exceeded."""

from __future__ import annotations

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from simulator.config.loader import load_scenario
from simulator.core.request import FINISHED, REJECTED, Request
from simulator.runner import Simulation

BASE = {
    "name": "stateful", "seed": 0,
    "hardware": {"device": {"kind": "gpu", "preset": "L4"}, "timing": {"kind": "roofline"}},
    "model": {"preset": "Llama-2-7B"},
    # a small KV cache (about 2,000 tokens per replica) so preemption and blocking happen
    "engine": {"max_model_len": 1024, "gpu_memory_utilization": 0.65},
    "workload": {"kind": "synthetic", "num_requests": 1, "arrival": {"process": "poisson", "rate": "1/s"},
                 "prompt_tokens": {"dist": "fixed", "value": 8}, "output_tokens": {"dist": "fixed", "value": 1}},
}

CONFIGS = {
    "vllm, 2 replicas": {"cluster": {"replicas": 2, "router": {"kind": "least_outstanding"}},
                         "policies": {"scheduler": {"kind": "vllm"}}},
    "sarathi budget 256": {"cluster": {"replicas": 1},
                           "policies": {"scheduler": {"kind": "sarathi", "chunk_size": 256}}},
    "disaggregated 1P2D": {
        "cluster": {"router": {"kind": "round_robin"}, "decode_router": {"kind": "least_kv"},
                    "pools": [{"name": "p", "role": "prefill", "replicas": 1},
                              {"name": "d", "role": "decode", "replicas": 2}],
                    "kv_transfer": {"link": {"kind": "link", "preset": "PCIe4"}}},
        "policies": {"scheduler": {"kind": "vllm"}}},
}


class ServingMachine(RuleBasedStateMachine):
    @initialize(config=st.sampled_from(sorted(CONFIGS)))
    def build(self, config):
        sc = {**BASE, **CONFIGS[config]}
        self.sim = Simulation(load_scenario(sc))
        self.cluster = self.sim.cluster
        self.env = self.sim.env
        self.next_rid = 0
        self.budget = 256 if "sarathi" in config else None

    @rule(prompt=st.integers(1, 900), output=st.integers(1, 300))
    def arrive(self, prompt, output):
        self.cluster.arrive(Request(self.next_rid, self.env.now, prompt, output))
        self.next_rid += 1

    @rule(ms=st.sampled_from([1, 5, 20, 100, 1000]))
    def advance(self, ms):
        self.env.run(until=self.env.now + ms * 10**9)

    # -- invariants -------------------------------------------------------------------------
    def _places(self):
        """Where each live request is: a replica's queue or batch, a migration queue, or in flight."""
        seen: dict[int, str] = {}
        in_flight = {r.rid for r in self.cluster.requests} - {r.rid for r in self.cluster.requests
                                                              if r.state in (FINISHED, REJECTED)}
        for rep in self.cluster.replicas:
            for name, items in (("waiting", rep.waiting), ("running", rep.running), ("incoming", rep.incoming),
                                ("migrating", [m[0] for m in rep.migrating])):
                for r in items:
                    assert r.rid not in seen, f"request {r.rid} in {seen[r.rid]} and {name}"
                    seen[r.rid] = f"{name}@{rep.index}"
        return seen, in_flight

    @invariant()
    def no_request_is_lost_or_duplicated(self):
        if not hasattr(self, "sim"):
            return
        seen, live = self._places()
        done = [r for r in self.cluster.requests if r.state in (FINISHED, REJECTED)]
        assert len(self.cluster.requests) == self.next_rid
        assert len({r.rid for r in self.cluster.requests}) == self.next_rid
        # a live request is in exactly one queue, or its KV is crossing the link (nowhere else)
        transferring = live - set(seen)
        for rid in transferring:
            assert self.cluster.decoders, f"request {rid} vanished"
        assert not set(seen) & {r.rid for r in done}
        for r in done:
            if r.state == FINISHED:
                assert r.num_generated == r.max_new_tokens

    @invariant()
    def kv_is_never_over_capacity_and_matches_what_requests_hold(self):
        if not hasattr(self, "sim"):
            return
        for rep in self.cluster.replicas:
            assert 0 <= rep.kv.used <= rep.kv.total_blocks
            held = sum(r.kv_blocks for r in rep.running) + sum(r.kv_blocks for r in rep.waiting)
            held += sum(r.kv_blocks for r in rep.incoming)
            # a prefill replica also holds the blocks of requests whose KV is still being sent
            assert held <= rep.kv.used

    @invariant()
    def the_token_budget_is_never_exceeded(self):
        if not hasattr(self, "sim") or self.budget is None:
            return
        b = self.sim.recorder.batch
        for it, pre, rows in zip(b["iterations"], b["prefill_tokens"], b["decode_rows"]):
            if it == 1:
                assert pre + rows <= self.budget


TestServingMachine = ServingMachine.TestCase
TestServingMachine.settings = settings(max_examples=30, stateful_step_count=25, deadline=None,
                                       suppress_health_check=[HealthCheck.too_slow])
