"""Preemption mechanics: where a request's KV lives (``RequestView.kv_location``, on every KV
policy) and block-group swap copies that contend for one PCIe copy stream."""

from __future__ import annotations

import simpy

from simulator.core.clock import PS_PER_S
from simulator.core.contracts import KvView
from simulator.core.request import Request
from simulator.core.resources import SharedBandwidth
from simulator.serving.kv_cache import PagedKvCache
from simulator.serving.kv_manager import KVManager
from simulator.serving.kv_offload import KvOffload

BW = 25e9  # bytes/s
LAT_PS = 10_000_000  # 10 us per copy


class _Swap:
    def choose(self, nbytes, free):
        return "swap"


class _Host:
    def shared_link(self, env, name):
        return SharedBandwidth(env, BW, latency_ps=LAT_PS, name=name)


def _req(rid: int, kvm: KVManager, tokens: int) -> Request:
    r = Request(rid, 0, tokens, 10)
    kvm.grow(r, tokens)
    r.num_computed = tokens
    return r


def test_kv_location_is_a_request_field_on_every_kv_policy():
    kvm = KVManager(PagedKvCache(64, 16))  # plain paging: no host copies at all
    r = Request(0, 0, 40, 10)
    assert r.kv_location == "none" and KvView(16, 64, 64).location(r) == "none"
    kvm.grow(r, 40)
    r.num_computed = 40
    assert r.kv_location == "gpu" == kvm.view().location(r)
    kvm.preempt(r, "recompute")
    assert r.kv_location == "none"


def test_kv_location_follows_a_swap_out_and_an_overlapped_swap_in():
    env = simpy.Environment()
    kvm = KVManager(PagedKvCache(64, 16), KvOffload(env, 1000.0, _Host(), 1e9, _Swap()))
    kvm.configure_swaps(4, False, True, type("M", (), {"num_layers": 2})(), 1)
    r = _req(0, kvm, 40)
    assert kvm.preempt(r, "swap") and r.kv_location == "host" and r.kv_blocks == 0
    env.run()
    kvm.grow(r, 0)  # admitted again: blocks first, then the copy back
    kvm.admit(r)
    assert r.kv_blocks and r.kv_location == "partly"  # GPU blocks and the host copy it is restored from
    env.run()
    assert r.kv_location == "gpu"


def test_concurrent_block_group_swaps_pay_their_copy_overheads_in_turn():
    """Two swap-outs at one instant: their bytes share the link, and the per-copy overheads of both
    are paid one after another on the one copy stream (not twice in parallel)."""
    env = simpy.Environment()
    per_tok = 1000.0
    kvm = KVManager(PagedKvCache(256, 16), KvOffload(env, per_tok, _Host(), 1e12, _Swap()))
    kvm.configure_swaps(1, False, True, type("M", (), {"num_layers": 4})(), 1)  # 8 layer buffers
    a, b = _req(0, kvm, 160), _req(1, kvm, 160)  # 10 blocks each: 80 copies each
    kvm.preempt(a, "swap")
    kvm.preempt(b, "swap")
    ends = []
    for ev in kvm.offload.out_done.values():
        ev.callbacks.append(lambda _e: ends.append(env.now))
    env.run()
    copies = 8 * 10
    wire_ps = 2 * 160 * per_tok / BW * PS_PER_S
    assert kvm.offload.copies == 2 * copies
    # every copy's overhead in turn (the link's latency model overlaps the two first copies' only);
    # with the overheads paid in parallel the last swap ended at wire + 80 overheads
    assert abs(max(ends) - (wire_ps + (2 * copies - 1) * LAT_PS)) <= 2


def test_dropping_a_request_frees_its_kept_host_copy():
    """A resumed request keeps its host copy for its next swap-out (reuse); if it is then dropped,
    that copy is freed: host bytes in use return to zero."""
    env = simpy.Environment()
    kvm = KVManager(PagedKvCache(64, 16), KvOffload(env, 1000.0, _Host(), 1e9, _Swap()))
    kvm.configure_swaps(4, True, False, type("M", (), {"num_layers": 2})(), 1)
    r = _req(0, kvm, 40)
    assert kvm.preempt(r, "swap")
    env.run()
    kvm.grow(r, 0)
    kvm.admit(r)  # swapped back in; the host copy is kept
    env.run()
    assert kvm.offload.host_used == 40 * 1000.0
    kvm.preempt(r, "drop")
    assert kvm.offload.host_used == 0.0 and not kvm.offload.kept and kvm.used == 0
