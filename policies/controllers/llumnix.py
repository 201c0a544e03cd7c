"""Llumnix-style rescheduling: load balancing by virtual usage, priority headroom, de-fragmentation.

Models: each replica's *virtual usage* in KV blocks is the blocks its running requests hold, plus
    the blocks its head-of-line waiting request needs to start (de-fragmentation: a queued request
    that does not fit counts as load, so migrating others out makes room for it), plus a headroom of
    ``headroom_blocks`` for each running high-priority request (the class given by its prefix id),
    so high-priority requests see an emptier replica; a draining replica counts as full. Its
    *freeness* is (total blocks - virtual usage) / (running requests + 1). Each call pairs the
    replicas of lowest freeness (below ``src_freeness``) with those of highest freeness (above
    ``dst_freeness``) and migrates from each source the running decode request of lowest priority
    and shortest context that fits the destination (least to copy), at most ``max_migrations`` per
    source per call, none while one is in flight from it. A queued request that has computed
    nothing may instead be stolen by a replica with an empty queue and a higher freeness.
    With ``dispatch`` each arriving request goes to the replica of highest freeness (Llumnix's
    global scheduler; ties to the lowest index), so the headroom of high-priority requests also
    steers new arrivals away from their replicas; ``migrate: false`` keeps that dispatch and turns
    migration and stealing off (the paper's dispatch-only baseline, INFaaS++).
Ignores: its auto-scaling thresholds; its local scheduler's priority queue order (the scenario's
    scheduler orders each queue).
Source: Sun et al., "Llumnix: Dynamic Scheduling for Large Language Model Serving" (OSDI 2024),
    Section 4.4 (virtual usage, freeness, migration pairing).
"""

from __future__ import annotations

from pydantic import Field

from policies.controllers import ControllerConfig, ControllerView, Migrate, ReplicaState, Steal, register_controller


class LlumnixConfig(ControllerConfig):
    src_freeness: float = Field(default=2.0, description="migrate out of replicas whose freeness (free blocks per "
                                                         "running request) is below this")
    dst_freeness: float = Field(default=20.0, description="migrate into replicas whose freeness is above this")
    max_migrations: int = Field(default=1, ge=1, description="migrations started per source per call")
    high_priority_class: int | None = Field(default=None, description="prefix id of high-priority requests")
    headroom_blocks: int = Field(default=0, ge=0, description="blocks kept per running high-priority request")
    steal: bool = Field(default=True, description="move queued requests to replicas with an empty queue")
    dispatch: bool = Field(default=False, description="dispatch each arrival to the replica of highest freeness "
                                                      "(instead of the scenario's router)")
    migrate: bool = Field(default=True, description="migrate and steal (false: dispatch only)")


@register_controller("llumnix", config=LlumnixConfig)
class LlumnixController:
    def __init__(self, config: LlumnixConfig) -> None:
        self.config = config

    def _high(self, r) -> bool:
        c = self.config.high_priority_class
        return c is not None and r.prefix_id == c

    def freeness(self, s: ReplicaState) -> float:
        if s.draining:
            return float("-inf")
        used = s.total_blocks - s.free_blocks
        if s.waiting:
            head = s.waiting[0]
            used += max(0, s.blocks_for(head.prefill_target) - head.kv_blocks)
        used += self.config.headroom_blocks * sum(1 for r in s.running if self._high(r))
        return (s.total_blocks - used) / (len(s.running) + 1)

    def dispatch(self, request, view: ControllerView) -> int | None:
        if not self.config.dispatch:
            return None
        open_ = [s for s in view.replicas if not s.draining]
        if not open_:
            return None  # every replica is draining: the router's fallback decides
        return max(open_, key=lambda s: (self.freeness(s), -s.index)).index

    def decide(self, view: ControllerView):
        c = self.config
        if not c.migrate:
            return ()
        reps = list(view.replicas)
        free = {s.index: self.freeness(s) for s in reps}
        dsts = sorted((s for s in reps if not s.draining and free[s.index] > c.dst_freeness),
                      key=lambda s: -free[s.index])
        srcs = sorted((s for s in reps if free[s.index] < c.src_freeness), key=lambda s: free[s.index])
        actions = []
        room = {s.index: s.free_blocks for s in reps}
        for src in srcs:
            if src.migrating_out or not dsts:
                continue
            cands = sorted((r for r in src.running if not r.in_prefill and r.remaining_tokens > 1),
                           key=lambda r: (self._high(r), r.num_computed))
            moved = 0
            for dst in dsts:
                if dst.index == src.index or free[dst.index] <= free[src.index]:
                    continue
                for r in cands:
                    need = dst.blocks_for(r.num_computed + dst.block_size)
                    if need <= room[dst.index]:
                        actions.append(Migrate(r.rid, src.index, dst.index))
                        room[dst.index] -= need
                        cands.remove(r)
                        moved += 1
                        break
                if moved >= c.max_migrations:
                    break
        if c.steal:
            idle = [s for s in dsts if not s.waiting]
            for src in sorted(reps, key=lambda s: -len(s.waiting)):
                for r in src.waiting[1:] if len(src.waiting) > 1 else ():
                    if not idle:
                        break
                    if r.num_computed or r.kv_blocks:
                        continue
                    dst = idle.pop(0)
                    if dst.index != src.index:
                        actions.append(Steal(r.rid, src.index, dst.index))
        return actions
