"""Cluster controller: live migration, steal, drain/resume conserve requests and KV blocks; every
action is checked."""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from policies.controllers import Drain, Migrate, Resume, Steal
from simulator.config.loader import load_scenario
from simulator.core.clock import s_to_ps
from simulator.core.errors import PolicyError
from simulator.core.request import FINISHED, RUNNING, WAITING
from simulator.runner import Simulation

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "policy_controller.yaml"
PRESSURE = ["engine.gpu_memory_utilization=0.3", "workload.arrival.rate=16/s"]


class Idle:
    """A controller that never acts (the state machine below acts for it)."""

    def __init__(self, config=None):
        pass

    def decide(self, view):
        return []


def _blocks_held(sim, rep) -> int:
    ctl = sim.cluster.controller
    held = sum(r.kv_blocks for r in rep.running) + sum(r.kv_blocks for r in rep.incoming)
    for m in ctl.migrations.values():
        if m.src is rep and m.req not in rep.running and m.req.state == WAITING:
            held += m.req.kv_blocks  # detached: its KV stays on the source until the last stage lands
        if m.dst is rep:
            held += m.reserved
    return held


def _check_conservation(sim) -> None:
    seen = {}
    for rep in sim.cluster.replicas:
        for r in list(rep.waiting) + rep.running + rep.incoming:
            assert r.rid not in seen, f"request {r.rid} on replicas {seen[r.rid]} and {rep.index}"
            seen[r.rid] = rep.index
        assert rep.kvm.used == _blocks_held(sim, rep)
        assert 0 <= rep.kvm.used <= rep.kvm.total_blocks


@functools.cache
def _pressure_run():
    sim = Simulation(load_scenario(SCENARIO, PRESSURE + ["workload.num_requests=300"]))
    return sim, sim.run()


def test_llumnix_migrates_under_kv_pressure_and_every_request_finishes_once():
    sim, res = _pressure_run()
    st_ = res.summary["kv_cache"]
    assert st_["migrations"] > 0 and st_["migration_stages"] >= st_["migrations"]
    assert 0 < st_["migration_stall_s"] < 1.0  # only the last stage stalls
    reqs = sim.cluster.requests
    assert sorted(r.rid for r in reqs) == list(range(300))
    assert all(r.state == FINISHED and r.num_generated == r.max_new_tokens for r in reqs)
    assert all(rep.kvm.used == 0 for rep in sim.cluster.replicas)
    moved = [e for e in sim.cluster.controller.log if e[8] == "migrated"]
    for rid, src, dst, t0, t1, _stages, stall, nbytes, _ in moved:
        r = reqs[rid]
        assert {src, dst} <= {run[0] for run in r.runs}  # decoded on both sides
        assert t0 <= t1 and stall <= t1 - t0 and nbytes > 0


def test_a_migration_copies_the_whole_context_in_stages_over_the_link():
    sim, _ = _pressure_run()
    ctl = sim.cluster.controller
    per_token = ctl.kv_bytes_per_token
    moved = [e for e in ctl.log if e[8] == "migrated"]
    assert moved
    for rid, _, dst, t0, t1, stages, _stall, nbytes, _ in moved:
        tokens = nbytes / per_token
        r = sim.cluster.requests[rid]
        assert tokens == pytest.approx(round(tokens))  # whole tokens, each copied once
        assert round(tokens) <= r.prompt_tokens + r.max_new_tokens
        link = ctl.links[dst]
        # the copy cannot beat the link: bytes / bandwidth + one latency per stage
        assert t1 - t0 >= nbytes / link.bw_per_ps + stages * link.latency_ps - stages


class ControllerMachine(RuleBasedStateMachine):
    """Random controller actions between slices of simulated time."""

    def __init__(self):
        super().__init__()
        kind = f"{__name__}:Idle"
        self.sim = Simulation(load_scenario(SCENARIO, PRESSURE + ["workload.num_requests=60", "cluster.replicas=3",
                                                                  f"cluster.controller.kind={kind}"]))
        self.sim.cluster.start_open_loop(self.sim.table)
        self.ctl = self.sim.cluster.controller
        self.t = 0

    @rule(dt=st.integers(1, 400))
    def advance(self, dt):
        self.t += s_to_ps(dt / 1000)
        self.sim.env.run(until=self.t)

    def _running(self):
        return [(rep, r) for rep in self.sim.cluster.replicas for r in rep.running
                if not r.in_prefill and r.rid not in self.ctl.migrations]

    @precondition(lambda self: self._running())
    @rule(i=st.integers(0, 10**6), d=st.integers(0, 2))
    def migrate(self, i, d):
        rep, r = self._running()[i % len(self._running())]
        dst = self.sim.cluster.replicas[d]
        legal = (dst is not rep and dst.index not in self.ctl.draining
                 and dst.kvm.blocks_for(r.num_computed + 1) <= dst.kvm.free)
        if legal:
            self.ctl.apply(Migrate(r.rid, rep.index, dst.index))
        else:
            with pytest.raises(PolicyError, match=f"'{self.ctl.name}'.*request {r.rid}"):
                self.ctl.apply(Migrate(r.rid, rep.index, dst.index))

    @rule(i=st.integers(0, 10**6), d=st.integers(0, 2))
    def steal(self, i, d):
        waiting = [(rep, r) for rep in self.sim.cluster.replicas for r in rep.waiting
                   if not r.num_computed and r.rid not in rep.outgoing]
        if not waiting:
            return
        rep, r = waiting[i % len(waiting)]
        if d != rep.index and d not in self.ctl.draining:
            self.ctl.apply(Steal(r.rid, rep.index, d))

    @rule(d=st.integers(0, 2), on=st.booleans())
    def drain_or_resume(self, d, on):
        self.ctl.apply(Drain(d) if on and len(self.ctl.draining) < 2 else Resume(d))

    @rule(rid=st.integers(0, 59), s=st.integers(0, 2))
    def a_request_not_where_the_policy_says_is_refused(self, rid, s):
        rep = self.sim.cluster.replicas[s]
        r = rep.by_id.get(rid)
        if r is None or r.state != RUNNING or r not in rep.running:
            with pytest.raises(PolicyError, match=f"request {rid}, which is not running on replica {s}"):
                self.ctl.apply(Migrate(rid, s, (s + 1) % 3))

    @invariant()
    def requests_and_blocks_are_conserved(self):
        _check_conservation(self.sim)

    def teardown(self):
        ControllerMachine.migrated += len(self.ctl.log)
        self.ctl.draining.clear()
        self.sim.env.run()
        reqs = self.sim.cluster.requests
        assert len({r.rid for r in reqs}) == len(reqs) == 60
        assert all(r.state == FINISHED and r.num_generated == r.max_new_tokens for r in reqs)
        assert all(rep.kvm.used == 0 for rep in self.sim.cluster.replicas)


ControllerMachine.migrated = 0
ControllerMachine.TestCase.settings = settings(max_examples=8, stateful_step_count=20, deadline=None)
test_random_controller_actions_conserve_requests_and_blocks = ControllerMachine.TestCase


def test_the_random_actions_above_did_migrate_requests():
    if ControllerMachine.migrated == 0:  # run on its own: exercise the machine once more
        test_random_controller_actions_conserve_requests_and_blocks("runTest").runTest()
    assert ControllerMachine.migrated > 0


class ToFull:
    def __init__(self, config=None):
        pass

    def decide(self, view):
        src = max(view.replicas, key=lambda s: len(s.running))
        for r in src.running:
            if not r.in_prefill:
                return [Migrate(r.rid, src.index, (src.index + 1) % len(view.replicas))]
        return []


def test_migration_to_a_full_replica_is_a_policy_error_naming_the_controller():
    kind = f"{__name__}:ToFull"
    sim = Simulation(load_scenario(SCENARIO, PRESSURE + ["workload.num_requests=200",
                                                         f"cluster.controller.kind={kind}"]))
    for rep in sim.cluster.replicas[1:]:
        rep.kvm.reserve(rep.kvm.free)  # every other replica is full
    with pytest.raises(PolicyError, match=f"'{kind}'.*migrates request \\d+ to replica 1, which has 0 free KV blocks"):
        sim.run()


def test_an_unknown_controller_kind_is_one_line_and_exit_2(tmp_path):
    p = subprocess.run([sys.executable, "-m", "simulator.cli", "run", str(SCENARIO), "--set",
                        "cluster.controller.kind=lumnix", "-o", str(tmp_path)],
                       capture_output=True, text=True, cwd=ROOT)
    err = (p.stderr + p.stdout).strip()
    assert p.returncode == 2 and "did you mean 'llumnix'" in err and len(err.splitlines()) == 1


def test_an_idle_controller_reproduces_the_fast_path_run_exactly():
    # a controller turns decode stretches off; one that never acts must leave every request's times as they are
    base = ["workload.num_requests=120", "cluster.replicas=2"]
    off = Simulation(load_scenario(SCENARIO, base + ["cluster.controller=null"]))
    on = Simulation(load_scenario(SCENARIO, base + [f"cluster.controller.kind={__name__}:Idle"]))
    off.run(), on.run()
    assert off.cluster.replicas[0].steady and not on.cluster.replicas[0].steady
    assert [(r.rid, r.first_token_ps, r.finish_ps) for r in off.cluster.requests] == \
        [(r.rid, r.first_token_ps, r.finish_ps) for r in on.cluster.requests]
