"""The KV view a policy is handed always shows the cache as it is now.

``PagedKvCache.view`` hands out the same frozen ``KvView`` while its figures are unchanged. A plain
``KvView`` shows only the block size, the total and the free blocks (its other answers are functions of
the request asked about), so reusing it is exact only if every change to those three is seen. Each
thing that moves them is done here in turn -- blocks grown, speculated tokens rolled back, preemption by
swap, recompute or drop, a swapped request brought back, a request finished, blocks reserved for KV
arriving from elsewhere and released after it leaves, the pool resized -- and after each the view
must equal one built afresh; the manager's view with host copies must say where each request's KV is
now; a view handed out earlier keeps the figures it showed.
"""

from __future__ import annotations

import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.core.contracts import KvView
from simulator.core.request import RUNNING, Request
from simulator.serving.chunk_reuse import ChunkReuseKvCache
from simulator.serving.kv_cache import PagedKvCache
from simulator.serving.kv_manager import KVManager
from simulator.serving.kv_offload import KvOffload


class _Policy:
    def choose(self, nbytes, free):
        return "swap" if nbytes <= free else "recompute"


class _Host:
    def shared_link(self, env, name):
        from simulator.core.resources import SharedBandwidth

        return SharedBandwidth(env, 25e9, latency_ps=0, name=name)


class _NoReuse:
    def skipped_tokens(self, prompt_tokens):
        return 0

    def report(self):
        return {}


OPS = ["grow", "spec", "preempt", "admit", "finish", "reserve", "unreserve", "resize"]


def _check(kvm: KVManager, reqs: list[Request], earlier: list[tuple[KvView, tuple]]) -> KvView:
    v = kvm.view()
    cache = kvm.cache
    assert (v.block_size, v.total_blocks, v.free_blocks) == (cache.block_size, cache.total_blocks,
                                                             cache.total_blocks - cache.used)
    assert v.used_blocks == cache.used
    if kvm.offload is not None:  # where each request's KV is, as the manager says now
        assert [v.location(r) for r in reqs] == [kvm.location(r) for r in reqs]
    else:
        assert type(v) is KvView
    for old, figures in earlier:  # a view handed out before keeps what it showed
        assert (old.block_size, old.total_blocks, old.free_blocks) == figures
    earlier.append((v, (v.block_size, v.total_blocks, v.free_blocks)))
    return v


@settings(max_examples=80, deadline=None)
@given(kind=st.sampled_from(["paged", "offload", "chunk_reuse"]),
       ops=st.lists(st.tuples(st.sampled_from(OPS), st.integers(0, 5), st.integers(1, 40),
                              st.sampled_from([None, "swap", "recompute", "drop"])), max_size=50))
def test_the_view_follows_every_change_of_the_cache(kind, ops):
    env = simpy.Environment()
    if kind == "offload":
        kvm = KVManager(PagedKvCache(48, 16), KvOffload(env, 1000.0, _Host(), 1e9, _Policy()))
    elif kind == "chunk_reuse":
        kvm = KVManager(ChunkReuseKvCache(48, 16, _NoReuse()))
    else:
        kvm = KVManager(PagedKvCache(48, 16))
    reqs = [Request(i, 0, 30, 100) for i in range(6)]
    for r in reqs:
        r.state = 0
    reserved = 0
    earlier: list = []
    prev = _check(kvm, reqs, earlier)
    for op, i, n, mode in ops:
        r = reqs[i]
        if op in ("grow", "spec") and r.state == RUNNING:
            if kvm.need(r, n) <= kvm.free:
                kvm.grow(r, n)
                if op == "spec":  # all but one of n speculated tokens rejected
                    kvm.rollback(r, n - 1)
                    r.num_computed += 1
                else:
                    r.num_computed += n
        elif op == "preempt" and r.state == RUNNING:
            if not kvm.preempt(r, mode):
                r.num_computed = 0
            r.state = 0
        elif op == "admit" and r.state != RUNNING:
            kvm.admit(r)
            r.state = RUNNING
        elif op == "finish" and r.state == RUNNING:
            kvm.release(r)
            r.state, r.num_computed = 0, 0
        elif op == "reserve" and n <= kvm.free:
            kvm.reserve(n)  # a migration's destination holds blocks for the KV on its way
            reserved += n
        elif op == "unreserve" and reserved:
            kvm.release_blocks(reserved)  # the KV left again (released as a departed request's blocks)
            reserved = 0
        elif op == "resize" and not kvm.used:
            kvm.set_total_blocks(16 + n)  # a draft model's memory taken out of the pool
        v = _check(kvm, reqs, earlier)
        if kind != "offload":  # the same object exactly while the figures are the same
            assert (v is prev) == ((v.block_size, v.total_blocks, v.free_blocks)
                                   == (prev.block_size, prev.total_blocks, prev.free_blocks))
        prev = v
    env.run()


def test_a_resize_with_the_same_free_count_is_not_missed():
    """Total and used both move so that the free blocks stay put: the view still shows the new total."""
    cache = PagedKvCache(40, 16)
    v0 = cache.view()
    cache.total_blocks, cache.used = 50, 10  # 40 free before and after
    v1 = cache.view()
    assert v1.free_blocks == v0.free_blocks == 40
    assert v1.total_blocks == 50 and v1.used_blocks == 10 and v0.total_blocks == 40
    cache.block_size = 32  # a different block size with the same counts
    assert cache.view().block_size == 32 and v1.block_size == 16
