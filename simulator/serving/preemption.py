"""Preempting a running request on a replica, by the mode its plan entry names (the mechanism).

``recompute``: its blocks are freed and it waits to compute prompt + generated tokens again;
``swap``: its KV is copied to host memory (``KVManager.preempt``) and only its last token is
computed again on resume; ``drop``: it is given up (rejected, unfinished) and its KV, on the GPU
and on the host, freed. None: the KV policy's global choice between swap and recompute.
"""

from __future__ import annotations

from simulator.core.events import EventKind
from simulator.core.request import REJECTED, WAITING, Request

_PREEMPT, _REJECT = EventKind.PREEMPTED, EventKind.REJECTED


def preempt(rep, r: Request, mode: str | None = None) -> None:
    """Take ``r`` out of ``rep``'s batch by ``mode`` (recompute, swap, drop or None)."""
    now = rep.env.now
    rep.running.remove(r)
    if mode == "drop":  # the request is given up: it leaves unfinished, its KV freed
        rep.kvm.preempt(r, "drop")
        r.state = REJECTED
        r.finish_ps = now
        rep.outstanding -= r.prefill_remaining + r.max_new_tokens - r.num_generated
        rep.rec.emit(now, _PREEMPT, rep.index, r.rid, r.num_computed)
        rep.rec.emit(now, _REJECT, rep.index, r.rid, r.prompt_tokens)
        rep.cluster.on_done(r)
        rep._notify("finish")
        return
    dropped = r.num_computed
    swapped = rep.kvm.preempt(r, mode)
    r.state = WAITING
    r.num_preemptions += 1
    r.prefill_target = r.prompt_tokens + r.num_generated
    if swapped:  # KV kept in host DRAM: only the last token is computed again
        dropped = 0
        rep.outstanding += r.prefill_target - r.num_computed
    else:
        r.num_computed = 0
        rep.outstanding += r.prefill_target
    rep.waiting.appendleft(r)
    rep.rec.emit(now, _PREEMPT, rep.index, r.rid, dropped)
    rep._notify("preempt")
