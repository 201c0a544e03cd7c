"""One training step of one data-parallel replica's pipeline, as SimPy processes.

Models: each pipeline stage is one process running Megatron-LM's order of forward (F) and backward
    (B) passes over (micro-batch, model chunk) units: 1F1B (warm-up of p - s - 1 forwards, then one
    forward and one backward alternately, then the cool-down backwards) and interleaved 1F1B
    (v chunks per stage, warm-up 2 (p - s - 1) + (v - 1) p units, chunk of unit k = (k mod pv) div p).
    A forward waits for the previous virtual stage's activation, a backward for the next one's
    gradient; both cross a point-to-point link whose time is the link latency plus the bytes over a
    processor-sharing bandwidth resource of the sending GPU (``SharedBandwidth``), so the pipeline
    bubble, its growth with communication, and contention with the gradient reduction all come out
    of the simulation. Gradients are reduced over the data-parallel GPUs in buckets as the last
    micro-batch's backward of each chunk produces them (all-reduce: 2 (n - 1) / n of the bytes on the
    wire, 2 (n - 1) latency steps; ZeRO-1: reduce-scatter, (n - 1) / n; ZeRO-2/3, which keep only
    their shard of the gradients, reduce-scatter every micro-batch's, as DeepSpeed does; experts
    spread over data-parallel ranks: over their expert-data-parallel group), one collective at a time on a
    communication stream that shares the GPU's link with the pipeline sends. ZeRO-3 all-gathers a
    chunk's parameters before each of its passes (prefetched one unit ahead); ZeRO-1/2 all-gather
    the updated parameters after the optimizer step. Offloaded activations go to host DRAM over the
    PCIe link after each forward and come back one unit before their backward.
    Context parallelism (ring attention): each attention pass of a unit (forward, recomputed forward,
    backward) is a ring of ``cp`` steps run before the unit's other kernels; in each step the GPU
    computes 1/cp of the pass's attention while it sends the K/V block in hand to the next GPU of the
    ring (the backward: K/V and their gradients, twice the bytes) over its link, as a transfer on the
    same processor-sharing resource as the pipeline sends and gradient reductions when the link is the
    same; a step ends when both are done, so a pass takes a/cp + (cp - 1) max(a/cp, send) alone on the
    link (Liu et al.'s ring, as ``simulator.serving.ring_attention`` times it for serving).
Ignores: compute slowed by concurrent communication kernels (SM sharing), NCCL protocol choice for
    the DP collectives (the link's alpha-beta cost), the all-gather over NVLink after a
    scatter/gather pipeline send, receive-side link contention (links are full duplex, each GPU's
    send side is modelled).
Sources: Narayanan et al., SC21 (1F1B and interleaved schedules, megatron/core/pipeline_parallel/
    schedules.py for the unit order); Li et al., "PyTorch Distributed" (VLDB 2020) for bucketed
    overlap; Rajbhandari et al., SC20 (ZeRO communication volumes).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import simpy

from simulator.core.clock import s_to_ps
from simulator.core.resources import SharedBandwidth

F, B = "F", "B"


def unit_order(p: int, m: int, v: int, s: int) -> list[tuple[str, int, int]]:
    """(F or B, micro-batch, chunk) in the order stage ``s`` of ``p`` runs them (``m`` micro-batches,
    ``v`` chunks per stage; v = 1 is plain 1F1B)."""
    total = m * v
    if v == 1:
        warm = min(p - s - 1, m)

        def mb(k: int, fwd: bool) -> tuple[int, int]:
            return k, 0
    else:
        warm = total if m == p else min((p - s - 1) * 2 + (v - 1) * p, total)

        def mb(k: int, fwd: bool) -> tuple[int, int]:
            chunk = (k % (p * v)) // p
            return (k // (p * v)) * p + k % p, chunk if fwd else v - 1 - chunk
    out = [(F, *mb(k, True)) for k in range(warm)]
    for i in range(total - warm):
        out.append((F, *mb(warm + i, True)))
        out.append((B, *mb(i, False)))
    out += [(B, *mb(k, False)) for k in range(total - warm, total)]
    return out


def max_in_flight(order: list[tuple[str, int, int]]) -> int:
    """Most (micro-batch, chunk) units whose activations a stage holds at once."""
    cur = peak = 0
    for kind, _, _ in order:
        cur += 1 if kind == F else -1
        peak = max(peak, cur)
    return peak


@dataclass(frozen=True)
class Channel:
    """A link as the simulation uses it: per-step latency and a sustained rate per GPU."""

    latency_s: float
    rate_bytes_per_s: float
    name: str = "link"


@dataclass
class PipelinePlan:
    """Everything one replica's step needs, per stage ``s`` and chunk ``c`` (seconds, bytes)."""

    p: int
    m: int
    v: int
    fwd_s: list[list[float]]
    bwd_s: list[list[float]]
    opt_s: list[float]
    act_bytes: float = 0.0  # one pipeline send per GPU (activation or its gradient)
    p2p: Channel | None = None
    dp: int = 1
    dp_channel: Channel | None = None
    zero: int = 0
    grad_bytes: list[list[float]] = field(default_factory=list)  # [s][c], per GPU
    param_bytes: list[list[float]] = field(default_factory=list)  # [s][c], per GPU (16-bit weights)
    bucket_bytes: float = 40e6
    overlap_grad_reduce: bool = True
    offload_bytes: float = 0.0  # activations of one (micro-batch, chunk) stashed to host
    # MoE experts spread over data-parallel ranks: their gradients and weights (not in grad_bytes /
    # param_bytes) are reduced and gathered over the expert-data-parallel group of expert_dp GPUs
    expert_grad_bytes: list[list[float]] = field(default_factory=list)
    expert_param_bytes: list[list[float]] = field(default_factory=list)
    expert_dp: int = 0  # 0: dp
    pcie: Channel | None = None
    # context parallelism: per [s][c], the ring attention passes of a forward / a backward unit as
    # (attention seconds of the pass, bytes sent per ring step, ring steps); their attention is not in
    # fwd_s / bwd_s
    ring_fwd: list[list[tuple[tuple[float, float, int], ...]]] = field(default_factory=list)
    ring_bwd: list[list[tuple[tuple[float, float, int], ...]]] = field(default_factory=list)
    cp_channel: Channel | None = None


@dataclass(frozen=True)
class Interval:
    rank: int
    lane: str  # compute | p2p | dp | pcie | cp
    name: str
    start_ps: int
    end_ps: int


@dataclass
class PipelineResult:
    step_ps: int
    stage_end_ps: list[int]
    intervals: list[Interval]
    busy_ps: list[int]  # compute time per stage
    pipeline_end_ps: list[int]  # end of each stage's last backward
    dp_wire_bytes: list[float]  # per stage GPU, bytes its DP collectives put on the wire
    p2p_bytes: list[float]
    order: list[list[tuple[str, int, int]]]
    cp_bytes: list[float] = field(default_factory=list)  # per stage GPU, K/V bytes its ring sends put on the link

    def bubble_fraction(self, stage: int = 0) -> float:
        """Idle share of ``stage``'s forward-backward phase (start to its last backward)."""
        span = self.pipeline_end_ps[stage]
        fb = sum(iv.end_ps - iv.start_ps for iv in self.intervals
                 if iv.rank == stage and iv.lane == "compute" and iv.name[0] in (F, B))
        return 1.0 - fb / span if span else 0.0


class _Sim:
    def __init__(self, plan: PipelinePlan) -> None:
        self.plan = plan
        self.env = simpy.Environment()
        p = plan.p
        self.orders = [unit_order(p, plan.m, plan.v, s) for s in range(p)]
        self.act = {}  # (mb, virtual stage) -> event: activation arrived
        self.grad = {}
        self.intervals: list[Interval] = []
        self.busy = [0] * p
        self.pipe_end = [0] * p
        self.stage_end = [0] * p
        self.dp_wire = [0.0] * p
        self.p2p_bytes = [0.0] * p
        self.links = [self._bw(plan.p2p) for _ in range(p)]
        same = plan.dp_channel is not None and plan.p2p is not None and plan.dp_channel.name == plan.p2p.name
        self.dp_links = self.links if same else [self._bw(plan.dp_channel) for _ in range(p)]
        # on a shared link a collective's bytes count at the link's point-to-point rate over its own rate
        self.dp_scale = plan.p2p.rate_bytes_per_s / plan.dp_channel.rate_bytes_per_s if same else 1.0
        self.streams = [simpy.Resource(self.env, capacity=1) for _ in range(p)]
        self.d2h = [self._bw(plan.pcie) for _ in range(p)]
        self.cp_bytes = [0.0] * p
        self.cp_links, self.cp_scale = self._shared(plan.cp_channel)
        self.h2d = [self._bw(plan.pcie) for _ in range(p)]

    def _shared(self, ch: Channel | None) -> tuple[list, float]:
        """Per-stage resources of ``ch``: the pipeline's or the data-parallel link's when it is the same
        link (by name), with the factor its bytes count at on that resource's rate."""
        if ch is None:
            return [None] * self.plan.p, 1.0
        for other, links in ((self.plan.p2p, self.links), (self.plan.dp_channel, self.dp_links)):
            if other is not None and other.name == ch.name and links[0] is not None:
                rate = self.plan.p2p.rate_bytes_per_s if links is self.links else other.rate_bytes_per_s
                return links, rate / ch.rate_bytes_per_s
        return [self._bw(ch) for _ in range(self.plan.p)], 1.0

    def _bw(self, ch: Channel | None) -> SharedBandwidth | None:
        return SharedBandwidth(self.env, ch.rate_bytes_per_s, name=ch.name) if ch is not None else None

    def event(self, table: dict, key) -> simpy.Event:
        ev = table.get(key)
        if ev is None:
            ev = table[key] = self.env.event()
        return ev

    # -- communication ---------------------------------------------------------------------------
    def send(self, s: int, nbytes: float, done: simpy.Event, name: str):
        plan, t0 = self.plan, self.env.now
        if plan.p2p is not None and nbytes > 0:
            yield self.env.timeout(s_to_ps(plan.p2p.latency_s))
            yield self.links[s].transfer(nbytes)
            self.p2p_bytes[s] += nbytes
            self.intervals.append(Interval(s, "p2p", name, t0, self.env.now))
        done.succeed()

    def collective(self, s: int, kind: str, nbytes: float, name: str, done: simpy.Event | None = None,
                   n: int | None = None):
        """A collective of ``nbytes`` (the full buffer per GPU) over ``n`` GPUs (default: the data-parallel
        group) on stage ``s``'s comm stream."""
        plan = self.plan
        n = plan.dp if n is None else n
        if n > 1 and nbytes > 0 and plan.dp_channel is not None:
            with self.streams[s].request() as req:
                yield req
                t0 = self.env.now
                steps, wire = (2 * (n - 1), 2.0 * (n - 1) / n * nbytes) if kind == "allreduce" else \
                    (n - 1, (n - 1) / n * nbytes)
                yield self.env.timeout(s_to_ps(steps * plan.dp_channel.latency_s))
                yield self.dp_links[s].transfer(wire * self.dp_scale)
                self.dp_wire[s] += wire
                self.intervals.append(Interval(s, "dp", name, t0, self.env.now))
        if done is not None:
            done.succeed()

    def ring_send(self, s: int, nbytes: float, name: str):
        """One ring step's K/V block sent to the next GPU of the context-parallel ring."""
        ch, t0 = self.plan.cp_channel, self.env.now
        if ch is not None and nbytes > 0:
            yield self.env.timeout(s_to_ps(ch.latency_s))
            yield self.cp_links[s].transfer(nbytes * self.cp_scale)
            self.cp_bytes[s] += nbytes
            self.intervals.append(Interval(s, "cp", name, t0, self.env.now))

    def ring(self, s: int, passes, name: str):
        """The ring attention passes of one unit: each step computes 1/steps of the pass's attention while
        the block in hand goes to the next GPU; the next step starts when both are done."""
        for a_s, nbytes, steps in passes:
            share = s_to_ps(a_s / steps)
            for k in range(steps):
                evs = [self.env.timeout(share)]
                if k < steps - 1:
                    evs.append(self.env.process(self.ring_send(s, nbytes, f"{name} kv step {k + 1}")))
                yield self.env.all_of(evs)

    def pcie(self, s: int, link: SharedBandwidth, nbytes: float, name: str, after: simpy.Event | None,
             done: simpy.Event):
        if after is not None:
            yield after
        t0 = self.env.now
        yield self.env.timeout(s_to_ps(self.plan.pcie.latency_s))
        yield link.transfer(nbytes)
        self.intervals.append(Interval(s, "pcie", name, t0, self.env.now))
        done.succeed()

    # -- a stage ---------------------------------------------------------------------------------
    def prefetch(self, s: int, i: int, ready: dict, stashed: dict) -> None:
        """Start what unit ``i`` of stage ``s`` needs before it runs: ZeRO-3 parameters, stashed activations."""
        plan, order = self.plan, self.orders[s]
        if i >= len(order) or i in ready:
            return
        kind, mb, c = order[i]
        evs = []
        if plan.zero == 3 and plan.dp > 1:
            evs += self.gather(s, [c], f"gather params c{c}")
        if kind == B and plan.offload_bytes > 0 and plan.pcie is not None and c * plan.p + s < plan.p * plan.v - 1:
            ev = self.env.event()
            self.env.process(self.pcie(s, self.h2d[s], plan.offload_bytes, f"reload mb{mb} c{c}",
                                       stashed.get((mb, c)), ev))
            evs.append(ev)
        ready[i] = evs

    def stage(self, s: int):
        plan, env, order = self.plan, self.env, self.orders[s]
        p, V = plan.p, plan.p * plan.v
        last_b = {}
        for i, (kind, _mb, c) in enumerate(order):
            if kind == B:
                last_b[c] = i
        ready: dict[int, list] = {}
        stashed: dict[tuple[int, int], simpy.Event] = {}
        reductions: list[simpy.Event] = []
        for i, (kind, mb, c) in enumerate(order):
            vs = c * p + s
            self.prefetch(s, i, ready, stashed)
            self.prefetch(s, i + 1, ready, stashed)
            if kind == F and vs > 0:
                yield self.event(self.act, (mb, vs))
            if kind == B and vs < V - 1:
                yield self.event(self.grad, (mb, vs))
            for ev in ready.pop(i, []):
                yield ev
            t0 = env.now
            rings = (plan.ring_fwd if kind == F else plan.ring_bwd)
            if rings and rings[s][c]:
                yield from self.ring(s, rings[s][c], f"{kind}{mb}")
            dur = s_to_ps(plan.fwd_s[s][c] if kind == F else plan.bwd_s[s][c])
            # ZeRO-2/3 keep only their gradient shard, so every micro-batch's gradients are reduce-scattered
            # as its backward produces them; otherwise they accumulate and only the last backward reduces
            every = kind == B and plan.zero >= 2 and plan.dp > 1
            if kind == B and (i == last_b[c] or every) and plan.overlap_grad_reduce:
                reductions += yield from self.backward_with_buckets(s, c, dur)
            else:
                yield env.timeout(dur)
                if every:  # not overlapped: the stage waits for this micro-batch's reduction (DeepSpeed's
                    for ev in self.reduce_chunk(s, c, len(self._buckets(s, c))):  # overlap_comm off)
                        yield ev
            self.busy[s] += env.now - t0
            self.intervals.append(Interval(s, "compute", f"{kind}{mb}" + (f".{c}" if plan.v > 1 else ""), t0,
                                           env.now))
            if kind == F:
                if plan.offload_bytes > 0 and plan.pcie is not None and vs < V - 1:
                    ev = stashed[(mb, c)] = env.event()
                    env.process(self.pcie(s, self.d2h[s], plan.offload_bytes, f"offload mb{mb} c{c}", None, ev))
                if vs < V - 1:
                    env.process(self.send(s, plan.act_bytes, self.event(self.act, (mb, vs + 1)), f"act mb{mb}"))
            elif vs > 0:
                env.process(self.send(s, plan.act_bytes, self.event(self.grad, (mb, vs - 1)), f"grad mb{mb}"))
        self.pipe_end[s] = env.now
        if not plan.overlap_grad_reduce and not (plan.zero >= 2 and plan.dp > 1):
            for c in range(plan.v):
                reductions += self.reduce_chunk(s, c, len(self._buckets(s, c)))
        for ev in reductions:
            yield ev
        t0 = env.now
        yield env.timeout(s_to_ps(plan.opt_s[s]))
        self.intervals.append(Interval(s, "compute", "optimizer", t0, env.now))
        if plan.zero in (1, 2) and plan.dp > 1:
            for ev in self.gather(s, range(plan.v), "gather params"):
                yield ev
        self.stage_end[s] = env.now

    def gather(self, s: int, chunks, name: str) -> list[simpy.Event]:
        """All-gather the weights of ``chunks`` (ZeRO): the dense ones over dp, the experts over expert_dp."""
        plan, out = self.plan, []
        parts = [(plan.param_bytes, plan.dp, name)]
        if plan.expert_param_bytes:
            parts.append((plan.expert_param_bytes, plan.expert_dp or plan.dp, f"{name} (experts)"))
        for table, n, label in parts:
            size = sum(table[s][c] for c in chunks) if table else 0.0
            if size > 0 and n > 1:
                ev = self.env.event()
                self.env.process(self.collective(s, "allgather", size, label, ev, n))
                out.append(ev)
        return out

    def _buckets(self, s: int, c: int) -> list[tuple[float, int]]:
        """(bytes, GPUs) of each gradient bucket of chunk ``c``: the dense ones, then the experts'."""
        plan, out = self.plan, []
        for table, n in ((plan.grad_bytes, plan.dp), (plan.expert_grad_bytes, plan.expert_dp or plan.dp)):
            total = table[s][c] if table else 0.0
            if total > 0:
                k = max(1, int(-(-total // plan.bucket_bytes)))
                out += [(total / k, n)] * k
        return out

    def reduce_chunk(self, s: int, c: int, upto: int, start: int = 0) -> list[simpy.Event]:
        kind = "allreduce" if self.plan.zero == 0 else "reducescatter"
        out = []
        for j, (size, n) in enumerate(self._buckets(s, c)[start:upto], start):
            ev = self.env.event()
            self.env.process(self.collective(s, kind, size, f"grads c{c} b{j}", ev, n))
            out.append(ev)
        return out

    def backward_with_buckets(self, s: int, c: int, dur: int):
        """The last backward of chunk ``c``: each bucket's reduction starts once its share is computed."""
        buckets = self._buckets(s, c)
        out: list[simpy.Event] = []
        n = len(buckets)
        if n == 0:
            yield self.env.timeout(dur)
            return out
        done = 0
        for j in range(n):
            step = dur * (j + 1) // n - done
            yield self.env.timeout(step)
            done += step
            out += self.reduce_chunk(s, c, j + 1, j)
        return out


def simulate(plan: PipelinePlan) -> PipelineResult:
    """Run one step of ``plan``; the step ends when every stage has applied its optimizer step."""
    sim = _Sim(plan)
    for s in range(plan.p):
        sim.env.process(sim.stage(s))
    sim.env.run()
    return PipelineResult(max(sim.stage_end), sim.stage_end, sim.intervals, sim.busy, sim.pipe_end, sim.dp_wire,
                          sim.p2p_bytes, sim.orders, sim.cp_bytes)
