"""Cluster controller details: the stages of a live migration and Llumnix's dispatch by freeness
(with high-priority headroom), each checked on the engine or against the policy's own rule."""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pytest

from policies.controllers import ControllerView, ReplicaState
from policies.controllers.llumnix import LlumnixConfig, LlumnixController
from simulator.config.loader import load_scenario
from simulator.core.errors import PolicyError
from simulator.core.events import EventKind
from simulator.core.request import FINISHED, Request
from simulator.runner import Simulation
from simulator.serving.controller import LAST_STAGE_TOKENS, MAX_STAGES

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "policy_controller.yaml"
PRESSURE = ["engine.gpu_memory_utilization=0.3", "workload.arrival.rate=16/s", "workload.num_requests=200"]


@functools.cache
def _run(*extra: str):
    sim = Simulation(load_scenario(SCENARIO, PRESSURE + list(extra)))
    return sim, sim.run()


def test_migration_stages_shrink_and_the_stall_is_the_last_stage_copy():
    sim, _ = _run()
    ctl = sim.cluster.controller
    ev = sim.recorder.event_columns()
    started = ev["kind"] == int(EventKind.KV_TRANSFER_STARTED)
    per_tok = ctl.kv_bytes_per_token
    moved = [e for e in ctl.log if e[8] == "migrated"]
    assert moved
    for rid, _src, dst, t0, t1, stages, stall, nbytes, _ in moved:
        sel = started & (ev["request"] == rid) & (ev["replica"] == dst) & (ev["t_ps"] >= t0) & (ev["t_ps"] <= t1)
        sizes = ev["value"][sel] / per_tok  # tokens per stage, in order
        assert len(sizes) == stages and sizes.sum() == pytest.approx(nbytes / per_tok, abs=stages)
        if stages < MAX_STAGES:
            # stop-and-copy starts once at most LAST_STAGE_TOKENS are left, plus the one token the
            # source decodes before the request leaves its batch at the next iteration boundary
            assert sizes[-1] <= LAST_STAGE_TOKENS + 1
        if stages > 1:
            assert sizes[-1] < sizes[0]  # the request kept decoding while the bulk was copied
        link = ctl.links[dst]
        last_bytes = sizes[-1] * per_tok
        assert stall >= last_bytes / link.bw_per_ps + link.latency_ps - 2  # the last stage's copy ...
        first_copy = sizes[0] * per_tok / link.bw_per_ps + link.latency_ps
        assert stall <= t1 - t0 and (stages == 1 or stall < first_copy)  # ... not the whole context's


def _state(i: int, running=(), free=1000, waiting=(), draining=False) -> ReplicaState:
    return ReplicaState(i, tuple(waiting), tuple(running), free, 1000, 16, 0, draining, frozenset(), frozenset(),
                        {}, 0)


def _req(rid: int, cls: int, computed: int) -> Request:
    r = Request(rid, 0, computed, 100, prefix_id=cls)
    r.num_computed = r.prefill_target = computed
    r.kv_blocks = -(-computed // 16)
    return r


def test_llumnix_dispatch_goes_to_the_freest_replica_and_headroom_steers_arrivals_away():
    hi, lo = _req(0, 0, 160), _req(1, 5, 160)
    view = ControllerView(0, (_state(0, (hi,), free=990), _state(1, (lo,), free=990), _state(2, (lo, lo), free=980)),
                          "dispatch")
    plain = LlumnixController(LlumnixConfig(dispatch=True))
    prio = LlumnixController(LlumnixConfig(dispatch=True, high_priority_class=0, headroom_blocks=500))
    new = Request(9, 0, 100, 100)
    assert plain.dispatch(new, view) == 0  # equal freeness: the lowest index
    assert prio.dispatch(new, view) == 1  # replica 0 holds a high-priority request and keeps headroom for it
    assert LlumnixController(LlumnixConfig()).dispatch(new, view) is None  # the router chooses
    drained = ControllerView(0, (_state(0, draining=True), _state(1, (lo,), free=10)), "dispatch")
    assert plain.dispatch(new, drained) == 1
    every = ControllerView(0, (_state(0, draining=True), _state(1, draining=True)), "dispatch")
    assert plain.dispatch(new, every) is None  # nowhere open: the router's fallback decides


def test_dispatch_only_runs_no_migration_and_serves_every_request_once():
    sim, res = _run("cluster.controller.dispatch=true", "cluster.controller.migrate=false")
    assert res.summary["kv_cache"]["migrations"] == 0 and sim.cluster.controller.steals == 0
    reqs = sim.cluster.requests
    assert sorted(r.rid for r in reqs) == list(range(200))
    assert all(r.state == FINISHED for r in reqs) and all(rep.kvm.used == 0 for rep in sim.cluster.replicas)
    ev = sim.recorder.event_columns()
    routed = ev["value"][ev["kind"] == int(EventKind.ROUTED)]
    assert len(np.unique(routed)) == len(sim.cluster.replicas)  # freeness spreads arrivals over every replica


class ToDraining:
    def __init__(self, config=None):
        pass

    def decide(self, view):
        return []

    def dispatch(self, request, view):
        return len(view.replicas)  # no such replica


def test_a_dispatch_to_a_replica_that_does_not_exist_is_a_policy_error_naming_the_controller():
    kind = f"{__name__}:ToDraining"
    with pytest.raises(PolicyError, match=f"'{kind}'.*dispatch of request 0 names replica 4"):
        Simulation(load_scenario(SCENARIO, PRESSURE + [f"cluster.controller.kind={kind}"])).run()


# -- random controller actions on replicas that also swap and speculate -------------------------
from hypothesis import settings  # noqa: E402
from hypothesis.stateful import RuleBasedStateMachine, invariant  # noqa: E402
from test_controller import ControllerMachine, _check_conservation  # noqa: E402

SWAP_SPEC = ["engine.gpu_memory_utilization=0.23", "workload.arrival.rate=30/s", "workload.num_requests=60",
             "cluster.replicas=3", "policies.kv_cache={kind: swap, swap_space: 64GiB}",
             "policies.speculation={kind: ngram, num_speculative_tokens: 3, acceptance: {alpha: 0.6}, "
             "length: {kind: fixed}}"]


class SwapSpecMachine(ControllerMachine):
    """The same random migrations, steals, drains and resumes, with preemption by swap and
    speculative verification (KV allocated and rolled back every step) on every replica."""

    def __init__(self):
        RuleBasedStateMachine.__init__(self)
        self.sim = Simulation(load_scenario(SCENARIO, SWAP_SPEC + [f"cluster.controller.kind={__name__}:Idle"]))
        self.sim.cluster.start_open_loop(self.sim.table)
        self.ctl = self.sim.cluster.controller
        self.t = 0

    @invariant()
    def host_bytes_are_conserved(self):
        for rep in self.sim.cluster.replicas:
            off = rep.kvm.offload
            assert abs(off.host_used - sum(off.swapped.values())) < 1e-3  # swapped out - swapped in
            for rid in off.swapped:
                assert rep.by_id[rid].kv_location in ("host", "partly")
        _check_conservation(self.sim)

    def teardown(self):
        super().teardown()
        SwapSpecMachine.swaps += sum(rep.kvm.offload.swap_outs for rep in self.sim.cluster.replicas)
        SwapSpecMachine.spec_rows += sum(rep.spec.rows for rep in self.sim.cluster.replicas)


class Idle:
    def __init__(self, config=None):
        pass

    def decide(self, view):
        return []


SwapSpecMachine.swaps = SwapSpecMachine.spec_rows = 0
SwapSpecMachine.TestCase.settings = settings(max_examples=6, stateful_step_count=20, deadline=None)
test_random_actions_with_swaps_and_speculation_conserve_requests_blocks_and_host_bytes = SwapSpecMachine.TestCase


def test_the_machine_above_swapped_and_speculated():
    if not SwapSpecMachine.spec_rows:  # run on its own: exercise the machine once more
        test_random_actions_with_swaps_and_speculation_conserve_requests_blocks_and_host_bytes("runTest").runTest()
    assert SwapSpecMachine.spec_rows > 0 and SwapSpecMachine.swaps > 0


def test_two_migrations_out_of_one_replica_share_its_port():
    """Two requests migrated from replica 0 to replicas 1 and 2 at one instant: their first stages
    leave through replica 0's one port, so together they take at least both contexts over the link
    (each into its own destination alone would have taken only its own bytes)."""
    from policies.controllers import Migrate
    from simulator.core.clock import s_to_ps

    sim = Simulation(load_scenario(SCENARIO, PRESSURE[:2] + ["workload.num_requests=60", "cluster.replicas=3",
                                                            f"cluster.controller.kind={__name__}:Idle",
                                                            "cluster.router.kind=round_robin"]))
    sim.cluster.start_open_loop(sim.table)
    ctl, env = sim.cluster.controller, sim.env
    src = sim.cluster.replicas[0]
    t = 0
    while True:
        t += s_to_ps(0.05)
        env.run(until=t)
        pair = [r for r in src.running if not r.in_prefill and r.remaining_tokens > 50][:2]
        if len(pair) == 2:
            break
    t0 = env.now
    for r, d in zip(pair, (1, 2)):
        ctl.apply(Migrate(r.rid, 0, d))
    ms = [ctl.migrations[r.rid] for r in pair]
    first = [m.req.num_computed for m in ms]  # tokens of each first stage
    done = {}
    while len(done) < 2:
        env.run(until=env.now + s_to_ps(1e-5))
        for m in ms:
            if m.stages and m.req.rid not in done:
                done[m.req.rid] = env.now
    link = ctl.out_links[0]
    both = sum(first) * ctl.kv_bytes_per_token / link.bw_per_ps
    assert max(done.values()) - t0 >= both + link.latency_ps - s_to_ps(1e-5)
