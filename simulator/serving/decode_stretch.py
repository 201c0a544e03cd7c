"""A stretch of identical decode iterations on one replica, run as one timeout.

When the scheduler promises ``steady_decode`` and the plan is a decode step over every running
request, the replica (``serving/replica.py``) runs the whole stretch -- up to the first request
finishing or the KV cache running out of blocks, at most ``SEGMENT_CAP`` iterations -- as one
timeout timed by ``StepTimer.decode_segment``; an arrival in the middle interrupts it at the end of
the iteration in flight, exactly where a per-iteration loop would have let the scheduler see the new
request. The tokens, KV blocks, run marks, energy and batch record of the iterations done are then
committed in bulk.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import simpy

from simulator.core.contracts import BatchPlan
from simulator.core.request import Request
from simulator.serving.iteration_end import IterationEnd
from simulator.serving.request_energy import stretch_share

# ``rep`` below is the serving Replica (typed Any: this module is imported by replica.py, and the
# serving modules import each other without a circle, tests/test_kv_manager.py)
Replica = Any

SEGMENT_CAP = 4096  # most decode iterations timed in one call
_add_reduce = np.add.reduce  # what ndarray.sum and ndarray.cumsum compute, called directly (less call overhead)
_add_accumulate = np.add.accumulate


def stretch_length(rep: Replica, running: list[Request]) -> tuple[int, int]:
    """(iterations until the first request finishes or the KV cache runs out, summed context
    of the first iteration)."""
    k = SEGMENT_CAP
    kv0 = len(running)
    for r in running:  # one pass: the fewest tokens left, the summed context
        left = r.max_new_tokens - r.num_generated
        if left < k:
            k = left
        kv0 += r.num_computed
    kv = rep.kv
    bs = kv.block_size
    free = kv.free - rep.min_free
    if k == 1 or len(running) * (k // bs + 1) <= free:  # cannot run out within k iterations
        return k, kv0
    rooms = [r.kv_blocks * bs - r.num_computed for r in running]

    def need(k: int) -> int:
        return sum(-(-(k - room) // bs) for room in rooms if room < k)

    if need(k) <= free:
        return k, kv0
    lo, hi = 1, k  # iteration 1 was checked by the plan; need(hi) > free
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if need(mid) <= free:
            lo = mid
        else:
            hi = mid
    return lo, kv0


def decode_stretch(rep: Replica, plan: BatchPlan):
    """Run the stretch of identical decode iterations of every running request that ``plan`` starts
    as one timeout (a SimPy generator of the replica's loop), then commit its tokens, blocks and records."""
    env = rep.env
    running = rep.running
    n = len(running)
    pad = plan.padding_rows
    if rep.kv.capped:  # summed resident context per iteration; decode_segment adds rows x j back
        k, kvs = rep.kv.segment(running, SEGMENT_CAP, rep.min_free)
        kv0 = kvs * (n + pad) // n - (n + pad) * np.arange(k, dtype=np.int64)
    else:
        k, kv0 = stretch_length(rep, running)
        if pad:
            kv0 = kv0 * (n + pad) // n
    ps, flops = rep.timer.decode_segment(n + pad, kv0, k)
    energy_j = rep.timer.last_energy_j  # per iteration
    cum = _add_accumulate(ps)  # int64 running sum
    start = env.now
    waiting = len(rep.waiting)
    done = k
    rep._seg = (start, cum, n)
    fe = rep.cluster.frontend
    relay = fe.stretch(start, cum, n) if fe is not None else None  # output handling per iteration
    if k > 1:
        rep._interruptible = True
        try:
            yield IterationEnd(env, int(cum[-1]))
        except simpy.Interrupt:
            elapsed = env.now - start
            j = int(cum.searchsorted(elapsed, "left"))
            done = j + 1
            rest = int(cum[j]) - elapsed
            rep._interruptible = False
            if rest > 0:
                yield IterationEnd(env, rest)
        rep._interruptible = False
    else:
        yield IterationEnd(env, int(cum[0]))
    rep._seg = None
    now = env.now
    # the stretch's per-device joules, summed once: the batch record's figure and each request's share
    stretch_j = float(_add_reduce(energy_j[:done])) if isinstance(energy_j, np.ndarray) and energy_j.ndim else 0.0
    share = stretch_share(stretch_j, rep.devices, n)  # per request (serving/request_energy.py)
    rep.busy_ps += now - start
    i0 = len(rep.iter_ends)
    if done == 1:
        rep.iter_ends.append(now)
    else:
        rep.iter_ends.frombytes((cum[:done] + start).tobytes())  # an int64 array('q'): the bytes as they are
    kv = rep.kv
    bs = kv.block_size
    finished = []
    grown = 0
    capped = kv.capped
    idx, i1 = rep.index, i0 + done
    cached = 0  # tokens the batch holds after the stretch (uncapped caches)
    settle = kv.settle if capped else None
    for r in running:
        c = r.num_computed + done
        blocks = settle(r, c) if capped else (c + bs - 1) // bs
        held = r.kv_blocks
        if blocks > held:
            grown += blocks - held
            r.kv_blocks = blocks
        r.num_computed = c
        g = r.num_generated + done
        r.num_generated = g
        r.energy_j += share
        runs = r.runs  # rep._mark(r, i0, done), inline
        if runs and (last := runs[-1])[2] == i0 and last[0] == idx:
            last[2] = i1
        else:
            runs.append([idx, i0, i1])
        if g >= r.max_new_tokens:
            finished.append(r)
        else:
            cached += c
    kv.add_used(grown)
    rep.outstanding -= n * done
    if relay is not None:  # the output handling of the iterations done (serving/frontend.py)
        fe.end_stretch(relay, now)
    for r in finished:
        running.remove(r)
        rep._finish(r, now)
    rep.rec.segment(rep.index, start, now, done, 0, n + pad, kv.used, kv.total_blocks, waiting, n,
                    float(_add_reduce(flops[:done])), rep._cached_tokens() if capped else cached, stretch_j)


__all__ = ["SEGMENT_CAP", "decode_stretch", "stretch_length"]
