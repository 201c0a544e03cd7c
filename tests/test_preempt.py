"""Per-request preemption: tagged modes, KV location, block-group copies, host-copy reuse."""

from __future__ import annotations

from pathlib import Path

import pytest
import simpy

from policies.api import BatchPlan, Preempt, PrefillChunk
from simulator.config.loader import load_scenario
from simulator.core.errors import PolicyError
from simulator.core.request import FINISHED, REJECTED, Request
from simulator.core.resources import SharedBandwidth
from simulator.runner import Simulation
from simulator.serving.kv_cache import PagedKvCache
from simulator.serving.kv_manager import KVManager
from simulator.serving.kv_offload import KvOffload

ROOT = Path(__file__).resolve().parents[1]
SCENARIO = ROOT / "scenarios" / "policy_preemption.yaml"
VLLM_SWAPS = ["policies.scheduler.swap_group_blocks=1", "policies.scheduler.reuse_host_copies=false",
              "policies.scheduler.overlap_swap=false"]


class Rotating:
    """Every 5th iteration preempts the oldest running request with the next mode of a cycle,
    and records where the KV of each waiting request is."""

    MODES = ("swap", "recompute", "drop", None)

    def __init__(self, config=None):
        self.i = 0
        self.locations: list[tuple[int, str, int]] = []  # (rid, location, num_computed)

    def plan(self, view):
        self.i += 1
        kv = view.kv
        where = getattr(kv, "location", None)  # views of caches with host copies say where a request's KV is
        for r in view.waiting if where is not None else ():
            self.locations.append((r.rid, where(r), r.num_computed))
        if self.i % 5 == 0 and len(view.running) > 1:
            r = view.running[0]
            mode = self.MODES[(self.i // 5) % 4]
            return BatchPlan(preempt=(Preempt(r.rid, mode) if mode else r.rid,))
        free = kv.free_blocks
        chunks = []
        for r in view.waiting:
            need = kv.blocks_to_admit(r, r.prefill_remaining)
            if need + len(view.running) + len(chunks) + 1 > free or len(chunks) >= 4:
                break
            chunks.append(PrefillChunk(r.rid, r.prefill_remaining))
            free -= need
        if chunks:
            return BatchPlan(prefill=tuple(chunks))
        dec = tuple(r.rid for r in view.running if not r.in_prefill)
        if sum(1 for r in view.running if r.num_computed >= r.kv_blocks * kv.block_size) > kv.free_blocks:
            return BatchPlan(preempt=(Preempt(view.running[-1].rid, "recompute"),))
        return BatchPlan(decode=dec)


def _sim(overrides):
    return Simulation(load_scenario(SCENARIO, ["workload.num_requests=60", *overrides]))


def test_tagged_preemptions_conserve_requests_blocks_and_host_bytes():
    sim = _sim([f"policies.scheduler.kind={__name__}:Rotating"])
    sched = sim.cluster.replicas[0].scheduler
    res = sim.run()
    reqs = sim.cluster.requests
    assert len(reqs) == 60 and len({r.rid for r in reqs}) == 60
    dropped = [r for r in reqs if r.state == REJECTED]
    assert dropped and all(r.num_generated < r.max_new_tokens for r in dropped)
    assert all(r.state == FINISHED and r.num_generated == r.max_new_tokens for r in reqs if r.state != REJECTED)
    rep = sim.cluster.replicas[0]
    assert rep.kvm.used == 0
    off = rep.offload
    assert off.host_used == pytest.approx(0.0, abs=1e-3) and not off.swapped
    kv = res.summary["kv_cache"]
    assert kv["swap_outs"] == kv["swap_ins"] > 0
    # a swapped-out request waits with its KV on the host; a recomputed one with none
    locs = {loc for _, loc, _ in sched.locations}
    assert "host" in locs
    assert all(c > 0 for _, loc, c in sched.locations if loc == "host")


class SwapsWithoutHost(Rotating):
    MODES = ("swap",) * 4


def test_a_swap_without_host_swap_space_is_a_policy_error_naming_the_scheduler():
    kind = f"{__name__}:SwapsWithoutHost"
    sim = Simulation(load_scenario(SCENARIO, ["workload.num_requests=60", f"policies.scheduler.kind={kind}",
                                              "policies.kv_cache=null"]))
    with pytest.raises(PolicyError, match=f"{kind}.*by swap, but the KV policy keeps no host copies"):
        sim.run()


class BadMode(Rotating):
    MODES = ("evict",) * 4


def test_an_unknown_preemption_mode_is_a_policy_error():
    kind = f"{__name__}:BadMode"
    with pytest.raises(PolicyError, match="by 'evict'; modes: recompute, swap, drop"):
        _sim([f"policies.scheduler.kind={kind}"]).run()


class _Host:
    def __init__(self, latency_ps):
        self.latency_ps = latency_ps

    def shared_link(self, env, name):
        return SharedBandwidth(env, 25e9, latency_ps=self.latency_ps, name=name)


class _Swap:
    def choose(self, nbytes, free):
        return "swap"


def _offload(group, reuse=False, latency_ps=10_000_000):
    env = simpy.Environment()
    off = KvOffload(env, 1000.0, _Host(latency_ps), 1e12, _Swap())
    off.group_blocks, off.block_size, off.layer_buffers, off.reuse = group, 16, 64, reuse
    return env, off


@pytest.mark.parametrize("group", [None, 1, 4, 64])
def test_a_swap_copy_pays_one_overhead_per_block_group_of_each_layer_buffer(group):
    env, off = _offload(group)
    r = Request(0, 0, 1600, 10)
    r.num_computed = 1600  # 100 blocks of 16 tokens, 1.6 MB
    assert off.swap_out(r)
    env.run(env.all_of(off.pending))
    copies = 1 if group is None else 64 * -(-100 // group)
    # closed form: one transfer at 25 GB/s plus the per-copy overhead of every copy
    assert env.now == pytest.approx(1.6e6 / 25e9 * 1e12 + copies * 10_000_000, rel=1e-9)
    assert off.copies == copies


def test_a_kept_host_copy_means_the_next_swap_out_copies_only_new_tokens():
    env, off = _offload(None, reuse=True)
    kvm = KVManager(PagedKvCache(1000, 16), off)
    r = Request(0, 0, 320, 100)
    kvm.grow(r, 320)
    r.num_computed = 320
    assert kvm.preempt(r, "swap") and off.bytes_out == 320_000
    kvm.admit(r)  # swapped in: the host copy stays valid
    kvm.grow(r, 0)
    r.num_computed += 32
    assert kvm.preempt(r, "swap")
    assert off.bytes_out == 320_000 + 32_000 and off.reused_bytes == 320_000
    assert off.host_used == 352_000
    kvm.admit(r)
    kvm.release(r)  # finished: the kept copy goes
    assert off.host_used == 0


def test_fastswitch_swaps_cut_tail_latency_against_per_block_synchronous_swaps():
    fast = _sim(["workload.num_requests=120"]).run().summary
    vllm = _sim(["workload.num_requests=120", *VLLM_SWAPS]).run().summary
    for metric in ("ttft_s", "tpot_s"):
        assert fast[metric]["p99"] < vllm[metric]["p99"]
    assert fast["kv_cache"]["swap_copies"] < vllm["kv_cache"]["swap_copies"]


def test_overlapped_swaps_conserve_requests_blocks_and_host_bytes():
    sim = _sim(["workload.num_requests=80"])  # fastswitch: block groups, reuse, swaps overlapping compute
    res = sim.run()
    rep = sim.cluster.replicas[0]
    assert rep.overlap_swaps and res.summary["kv_cache"]["swap_ins"] > 0
    assert all(r.state == FINISHED and r.num_generated == r.max_new_tokens for r in sim.cluster.requests)
    off = rep.offload
    assert rep.kvm.used == 0 and not off.swapped and not off.kept
    assert off.host_used == pytest.approx(0.0, abs=1e-3)
    assert all(ev.processed for ev in off.in_done.values())
