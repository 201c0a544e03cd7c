"""One model replica (one GPU, or a tensor-parallel group) serving requests iteration by iteration.

Each iteration: snapshot a read-only view, ask the scheduler for a plan, check the plan, apply it
to the KV cache, time it and advance the clock. When the scheduler promises ``steady_decode`` and
the plan is a decode step over every running request, the replica runs the whole stretch of
identical decode iterations — up to the first request finishing or the KV cache running out of
blocks — as one timeout (``serving/decode_stretch.py``); an arrival in the middle interrupts it at
the end of the iteration in flight, exactly where a per-iteration loop would have let the scheduler
see the new request.
"""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING

import numpy as np
import simpy

from simulator.core.contracts import BatchPlan, ReplicaLoad, scheduler_view
from simulator.core.errors import HwsimError, PolicyError
from simulator.core.events import EventKind
from simulator.core.request import FINISHED, REJECTED, RUNNING, WAITING, Request
from simulator.serving.controller import leave
from simulator.serving.decode_stretch import decode_stretch
from simulator.serving.expert_offload import expert_copies
from simulator.serving.iteration_end import IterationEnd
from simulator.serving.kv_cache import PagedKvCache
from simulator.serving.kv_manager import KVManager
from simulator.serving.plan_check import check_plan, preempt_entry
from simulator.serving.preemption import preempt
from simulator.serving.request_energy import attribute_step
from simulator.serving.speculation import commit_speculation, speculate
from simulator.serving.step_timer import StepTimer
from workloads.llm import BatchShape

if TYPE_CHECKING:
    from simulator.serving.cluster import Cluster

_ARRIVED, _SCHEDULED, _FIRST, _PREEMPT, _FINISH, _REJECT = (
    EventKind.ARRIVED, EventKind.SCHEDULED, EventKind.FIRST_TOKEN, EventKind.PREEMPTED,
    EventKind.FINISHED, EventKind.REJECTED)


class Replica:
    devices = 1  # devices a step's per-device joules are charged on (the pool's tp; set by the runner)

    def __init__(self, cluster: Cluster, index: int, scheduler, scheduler_name: str,
                 kv: PagedKvCache, timer: StepTimer, max_model_len: int, role: str = "both",
                 pool: int = 0, pipeline=None, offload=None) -> None:
        self.cluster = cluster
        self.pipeline = pipeline  # a shared Pipeline when this replica is one virtual engine of a PP group
        self.role = role  # both | prefill (hands requests off after prefill) | decode
        self.pool = pool
        self.migrating: deque = deque()  # (request, source replica, source blocks) waiting for KV here
        self.incoming: list[Request] = []  # transferred requests joining at the next iteration
        self.env: simpy.Environment = cluster.env
        self.rec = cluster.recorder
        self.index = index
        self.scheduler = scheduler
        self.scheduler_name = scheduler_name
        # a decode stretch cannot be one timeout when micro-batches interleave in a pipeline
        self.steady = bool(getattr(scheduler, "steady_decode", False)) and pipeline is None
        # the KV manager: blocks, sharing, host copies, copies in flight; ``kv`` (the block mechanism) and
        # ``offload`` (host copies, page-mapping costs) stay readable as its parts
        self.kvm = KVManager(kv, offload)
        self.offload = offload
        if self.kvm.maps_pages:
            self.steady = False  # page mappings make the decode iteration time depend on KV growth
        # expert copies on the swaps' host link (serving/expert_offload.py): each iteration's copies contend
        self.expert_link = offload is not None and getattr(offload, "h2d", None) is not None and \
            getattr(timer, "expert_fetch", None) is not None
        if self.expert_link:
            self.steady = False
        self.overlap_swaps = self.kvm.swaps_as_asked(scheduler, timer.model)  # FastSwitch-style swaps
        self.budget_fn = getattr(scheduler, "token_budget", None)
        # blocks a stretch of decodes must leave free after each iteration for the plan to stay the
        # same (1 for a scheduler that wants a free block at every request's turn, as vLLM v0 does)
        self.min_free = int(getattr(scheduler, "steady_min_free_blocks", 0))
        self.kv = kv
        self.spec = None  # a Speculator (serving/speculation.py) when the scenario speculates
        self.controller = None  # the cluster controller (serving/controller.py), if any
        self.detach: dict = {}  # rid -> event: a migrating request leaves the batch at the next boundary
        self.outgoing: dict = {}  # rid -> replica: a stolen waiting request moves at the next boundary
        self.timer = timer
        self.max_model_len = max_model_len
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []
        self.by_id: dict[int, Request] = {}
        self.iter_ends = self.rec.iter_end_ps[index]
        self.outstanding = 0
        self.busy_ps = 0
        self._wake: simpy.Event | None = None
        self._interruptible = False
        self._seg: tuple[int, np.ndarray, int] | None = None  # (start, cumulative ps, rows) in flight
        self.process = self.env.process(self._serve())

    # -- arrivals ------------------------------------------------------------------------
    def submit(self, req: Request) -> None:
        req.replica = self.index
        req.state = WAITING
        self.waiting.append(req)
        self.by_id[req.rid] = req
        self.outstanding += req.prompt_tokens + (1 if self.role == "prefill" else req.max_new_tokens)
        self._poke()
        self._notify("arrival")

    def _notify(self, event: str) -> None:
        if self.controller is not None:  # the cluster controller may act on it
            self.controller.notify(event)

    def _poke(self) -> None:
        """Let the serving loop see a change: wake it if idle, end a decode stretch early if busy."""
        if self._wake is not None:
            wake, self._wake = self._wake, None
            wake.succeed()
        elif self._interruptible:
            self._interruptible = False
            self.process.interrupt()

    # -- disaggregated serving: KV arrives from a prefill replica --------------------------
    def request_migration(self, req: Request, src: Replica, src_blocks: int) -> None:
        self.migrating.append((req, src, src_blocks))
        self.outstanding += req.max_new_tokens - req.num_generated
        self._poke()

    def _start_migrations(self) -> None:
        """Pull KV caches first come, first served while this replica has blocks for them."""
        kv = self.kvm
        while self.migrating:
            req, src, src_blocks = self.migrating[0]
            need = kv.need(req, 1)
            if need > kv.total_blocks:
                self.migrating.popleft()
                src.kvm.release_blocks(src_blocks)
                self.outstanding -= req.max_new_tokens - req.num_generated
                req.state = REJECTED
                req.finish_ps = self.env.now
                self.rec.emit(self.env.now, _REJECT, self.index, req.rid, req.num_computed)
                self.cluster.on_done(req)
                continue
            if need > kv.free:
                return
            self.migrating.popleft()
            kv.grow(req, 0)
            self.cluster.transfer_kv(req, src, src_blocks, self)

    def accept(self, req: Request) -> None:
        """The KV of ``req`` has arrived: it joins the running batch at the next iteration."""
        self.incoming.append(req)
        self._poke()

    def _join_incoming(self) -> None:
        for req in self.incoming:
            req.state = RUNNING
            req.replica = self.index
            self.by_id[req.rid] = req
            self.running.append(req)
        self.incoming.clear()

    def load(self) -> ReplicaLoad:
        kv = self.kv
        used, outstanding = kv.used, self.outstanding
        if self._seg is not None:  # mid-segment: report what the per-iteration loop would show now
            start, cum, n = self._seg
            j = int(cum.searchsorted(self.env.now - start, "right"))  # iterations done
            outstanding -= n * j
            t, bs = min(j + 1, len(cum)), kv.block_size  # tokens grown incl. the iteration in flight
            for r in self.running:
                if kv.capped:
                    used += kv.settle(r, r.num_computed + t) - r.kv_blocks
                    continue
                room = r.kv_blocks * bs - r.num_computed
                if room < t:
                    used += -(-(t - room) // bs)
        return ReplicaLoad(self.index, len(self.waiting), len(self.running), outstanding,
                           used / kv.total_blocks if kv.total_blocks else 1.0)

    # -- the loop ------------------------------------------------------------------------
    def _serve(self):
        env = self.env
        while True:
            if self.incoming:
                self._join_incoming()
            if self.migrating:
                self._start_migrations()
            if self.detach or self.outgoing:
                leave(self)
            if not self.waiting and not self.running:
                self._notify("idle")
                self._wake = env.event()
                yield self._wake
                continue
            kvm = self.kvm
            if kvm.shares:
                self.outstanding -= kvm.refresh_hits(self.waiting)
            view = scheduler_view(env.now, self.index, tuple(self.waiting), tuple(self.running),
                                  kvm.view(), self.max_model_len)  # SchedulerView(...), core/contracts.py
            try:
                plan = self.scheduler.plan(view)
            except HwsimError:
                raise
            except Exception as exc:  # a bug in a (user) policy is reported against the policy
                raise PolicyError(self.scheduler_name, f"plan() raised {type(exc).__name__}: {exc}") from exc
            if not isinstance(plan, BatchPlan):
                raise PolicyError(self.scheduler_name, f"plan() returned {type(plan).__name__}, not a BatchPlan")
            check_plan(self, plan, view)
            for rid in plan.reject:
                self._reject(self.by_id[rid])
            for entry in plan.preempt:
                rid, mode = preempt_entry(entry)
                self._preempt(self.by_id[rid], mode)
            if kvm.copies_pending:
                yield from kvm.wait_copies()  # swap-outs finish before the next step
            if not plan.prefill and not plan.decode:
                if plan.reject or plan.preempt:
                    continue
                self._wake = env.event()  # nothing can run until something changes
                yield self._wake
                continue
            if (self.steady and not plan.prefill and not plan.preempt and not plan.reject
                    and len(plan.decode) == len(self.running)):
                yield from decode_stretch(self, plan)  # serving/decode_stretch.py
            else:
                yield from self._iteration(plan)

    # -- state changes -------------------------------------------------------------------
    def _reject(self, r: Request) -> None:
        self.waiting.remove(r)
        r.state = REJECTED
        r.finish_ps = self.env.now
        self.outstanding -= r.prefill_remaining + (1 if self.role == "prefill" else r.max_new_tokens - r.num_generated)
        self.rec.emit(self.env.now, _REJECT, self.index, r.rid, r.prompt_tokens)
        self.cluster.on_done(r)
        self._notify("finish")

    def _preempt(self, r: Request, mode: str | None = None) -> None:
        preempt(self, r, mode)  # recompute, swap or drop (serving/preemption.py)

    def _admit(self, r: Request) -> None:
        if self.waiting and self.waiting[0] is r:
            self.waiting.popleft()
        else:
            self.waiting.remove(r)
        r.state = RUNNING
        self.running.append(r)
        delta = self.kvm.admit(r)
        if delta:
            self.outstanding -= delta
        if r.first_scheduled_ps < 0:
            r.first_scheduled_ps = self.env.now
            self.rec.emit(self.env.now, _SCHEDULED, self.index, r.rid, self.env.now - r.arrival_ps)

    def _hand_off(self, r: Request) -> None:
        """Prefill replica: the request leaves for a decode replica; its KV stays until the copy is done."""
        self.running.remove(r)
        del self.by_id[r.rid]
        blocks, r.kv_blocks, r.kv_reserve_tokens = r.kv_blocks, 0, 0
        r.state = WAITING
        self.cluster.hand_off(r, self, blocks)

    def _finish(self, r: Request, now: int) -> None:
        r.state = FINISHED
        r.finish_ps = now
        self.kvm.release(r)
        self.rec.emit(now, _FINISH, self.index, r.rid, r.num_generated)
        self.cluster.on_done(r)
        self._notify("finish")

    def _mark(self, r: Request, first: int, n: int) -> None:
        runs = r.runs
        if runs and runs[-1][2] == first and runs[-1][0] == self.index:
            runs[-1][2] = first + n
        else:
            runs.append([self.index, first, first + n])

    # -- one iteration -------------------------------------------------------------------
    def _iteration(self, plan: BatchPlan):
        env = self.env
        kv = self.kv
        by_id = self.by_id
        chunks, arriving = [], []
        emitting = 0
        used0 = kv.used
        for c in plan.prefill:
            r = by_id[c.rid]
            tokens = c.tokens
            if r.state == WAITING:
                tokens += r.num_computed
                self._admit(r)
                tokens -= r.num_computed  # the evicted part of a tentative prefix hit is recomputed now
            if self.overlap_swaps and (ev := self.kvm.arriving(r)) is not None:  # KV coming back: a later step
                kv.grow(r, 0)
                arriving.append(ev)
                continue
            ctx = r.num_computed
            kv.grow(r, tokens, c.reserve_tokens)
            chunks.append((r, tokens))
            if ctx + tokens >= r.prefill_target:
                emitting += 1
        dec = [by_id[rid] for rid in plan.decode]
        if arriving and not chunks and not dec:
            yield env.any_of(arriving)  # nothing to compute until a swap-in lands
            return
        decode_kv = 0
        spec_rows = ()
        if self.spec is not None and dec:
            dec, spec_rows, draft_s = speculate(self, dec, chunks, emitting)
        if type(kv) is PagedKvCache:  # plain blocks: only a row whose token opens a block calls grow()
            bs = kv.block_size
            for r in dec:
                c = r.num_computed + 1
                decode_kv += c
                target = -(-c // bs)
                if r.kv_reserve_tokens > 0 and -(-r.kv_reserve_tokens // bs) > target:
                    target = -(-r.kv_reserve_tokens // bs)
                if target > r.kv_blocks:
                    kv.grow(r, 1)
        else:
            for r in dec:
                kv.grow(r, 1)
                decode_kv += r.num_computed + 1
        if kv.capped:  # attention reads the resident tokens only
            decode_kv = kv.decode_kv(dec, 1)
            chunks_ctx = tuple((t, kv.resident(r.num_computed)) for r, t in chunks)
        else:
            chunks_ctx = tuple([(t, r.num_computed) for r, t in chunks])
        rows = len(dec)
        pad = plan.padding_rows
        if pad and rows:
            decode_kv = decode_kv * (rows + pad) // rows
        if spec_rows:
            shape = self.spec.shape(chunks_ctx, rows + pad, decode_kv, [(v, c, k) for _, k, v, c in spec_rows],
                                    emitting)
            dt, flops = self.timer.step(shape)
            dt += int(round(draft_s * 1e12))
        else:
            shape = BatchShape(prefill=chunks_ctx, decode_rows=rows + pad,
                               decode_kv=decode_kv, emitting=emitting + rows + pad)
            dt, flops = self.timer.step(shape)
        energy_j = self.timer.last_energy_j  # read before another replica's step replaces it
        if spec_rows:  # the draft model's passes (on these devices or a device of its own)
            energy_j += self.spec.step_draft_j
        if self.offload is not None:
            if self.kvm.copies_pending:
                yield from self.kvm.wait_copies()  # swap-ins arrive before the step
            dt += self.kvm.map_ps(max(0, kv.used - used0))
        start = env.now
        waiting = len(self.waiting)
        running = len(self.running)
        copies = expert_copies(self.offload, self.timer.expert_fetch, sum(t for t, _ in shape.prefill)
                               + shape.decode_rows, dt) if self.expert_link else None
        if self.pipeline is None:
            yield IterationEnd(env, dt)
            if copies is not None and not copies.processed:
                yield copies  # the experts shared the host link with KV swaps: the step waits for them
        else:
            yield env.process(self.pipeline.run(self.index, dt, shape.decode_rows + sum(t for _, t in chunks)))
            yield IterationEnd(env, 0)  # the same order at the boundary as an unpipelined replica
        now = env.now
        # per request (serving/request_energy.py), once the step is done: a step the run's end cuts is not recorded
        attribute_step(energy_j * self.devices, chunks, dec, spec_rows)
        self.busy_ps += now - start
        i = len(self.iter_ends)
        self.iter_ends.append(now)
        done: list[Request] = []
        processed = 0
        for r, t in chunks:
            r.num_computed += t
            processed += t
            if kv.shares:
                kv.publish(r)
            if r.num_computed >= r.prefill_target:
                r.num_generated += 1
                processed += 1
                self._mark(r, i, 1)
                if r.first_token_ps < 0:
                    r.first_token_ps = now
                    self.rec.emit(now, _FIRST, self.index, r.rid, now - r.arrival_ps)
                if r.num_generated >= r.max_new_tokens:
                    done.append(r)
        idx = self.index
        for r in dec:
            r.num_computed += 1
            r.num_generated += 1
            runs = r.runs  # self._mark(r, i, 1), inline
            if runs and (last := runs[-1])[2] == i and last[0] == idx:
                last[2] = i + 1
            else:
                runs.append([idx, i, i + 1])
            if r.num_generated >= r.max_new_tokens:
                done.append(r)
        extra = 0  # tokens a speculative row emits beyond its first
        if spec_rows:
            extra = commit_speculation(self, spec_rows, i, done)
            processed += extra
            rows += len(spec_rows)
        self.outstanding -= processed + rows
        if self.cluster.frontend is not None:  # the tokens' output handling, before a finished client sends again
            self.cluster.frontend.output(now, emitting + rows + extra)
        for r in done:
            self.running.remove(r)
            self._finish(r, now)
        if self.role == "prefill":
            for r, _ in chunks:
                if r.state == RUNNING and not r.in_prefill:
                    self._hand_off(r)
        self.rec.segment(self.index, start, now, 1, sum(t for _, t in chunks), rows + pad, kv.used,
                         kv.total_blocks, waiting, running, flops, self._cached_tokens(), energy_j)

    def _cached_tokens(self) -> int:
        """Tokens whose K/V the running batch holds (resident tokens under an eviction cap)."""
        res = getattr(self.kv, "resident", None)
        if res is None:
            return sum([r.num_computed for r in self.running])
        return sum([res(r.num_computed) for r in self.running])
